"""`benchmarks/finetune_voice.py` end to end at a tiny budget: a tiny source model, fine-tuned and trained from scratch
on 28 real clips for a few CPU-seconds each, scored on the 4 held-back clips."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune_voice.py"
LEARNING_DIR = SCRIPT.parent / "learning"
sys.path.insert(0, str(LEARNING_DIR))

import models  # noqa: E402


@pytest.fixture
def tiny_source(tmp_path) -> Path:
    """A tiny NaturalSpeech of the learning benchmark's config (sizes "tiny"), saved as a Trainer checkpoint is."""
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = models.make_config("naturalspeech", tmp_path / "corpus", tmp_path / "source", size="tiny", batch_size=2)
    model = Naturalspeech(config)
    with torch.no_grad():
        model.memory_initialized.fill_(True)
    path = tmp_path / "source.pth"
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "step": 3}, path)
    return path


@pytest.mark.slow
def test_script_finetunes_and_trains_from_scratch_then_scores_the_held_back_clips(tmp_path, ljspeech_dir, tiny_source):
    pytest.importorskip("pocketsphinx", reason="the benchmark extra (pocketsphinx) is not installed")
    out_dir = tmp_path / "results"
    command = [sys.executable, str(SCRIPT), "--minutes", "0.02", "--threads", "1", "--checkpoint", str(tiny_source)]
    command += ["--data-dir", str(ljspeech_dir), "--work-dir", str(tmp_path / "work"), "--out-dir", str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    payload = json.loads((out_dir / "finetune_voice_0.02min.json").read_text(encoding="utf-8"))
    rows = {row["run"]: row for row in payload["table"]}
    assert list(rows) == ["recordings", "source", "finetune", "scratch"]
    assert payload["settings"]["train_clips"] == 28
    assert payload["settings"]["held_back"] == ["LJ001-0008", "LJ001-0016", "LJ001-0024", "LJ001-0032"]
    for run in ("finetune", "scratch"):
        assert rows[run]["steps"] >= 1 and rows[run]["cpu_minutes"] >= 0.02, rows[run]
    for run in ("source", "finetune", "scratch"):
        assert rows[run]["mcd_db"] > 0 and 0 <= rows[run]["cer"] <= 1.5, rows[run]
        assert len(payload["sentences"][run]) == 4
    assert rows["recordings"]["cer"] < 0.5  # pocketsphinx understands the real clips
    # the fine-tune started from the source (warm start, bank fitted again), the scratch run did not
    log = (tmp_path / "work" / "finetune.log").read_text(encoding="utf-8")
    assert "Warm start from" in log and "Initialising the memory bank" in log
    assert "Warm start from" not in (tmp_path / "work" / "scratch.log").read_text(encoding="utf-8")
    with (out_dir / "finetune_voice_0.02min.csv").open(encoding="utf-8") as f:
        assert [row["run"] for row in csv.DictReader(f)] == list(rows)
    assert "| finetune |" in result.stdout and "| scratch |" in result.stdout


def test_script_names_missing_clips(tmp_path, tiny_source):
    command = [sys.executable, str(SCRIPT), "--checkpoint", str(tiny_source), "--data-dir", str(tmp_path / "none")]
    command += ["--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert f"No clips at {tmp_path / 'none'} (metadata.csv missing)" in result.stderr
