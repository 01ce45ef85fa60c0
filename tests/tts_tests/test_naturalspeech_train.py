"""Integration: the toolkit's own `train_tts` entry point trains NaturalSpeech through all four stages.

The run is the session fixture `trained_model_dir` (tests/conftest.py), which the synthesis tests also use.
"""

import pytest
import torch


@pytest.mark.slow
def test_train_tts_runs_all_stages_on_real_clips(trained_model_dir):
    log = (trained_model_dir.parent.parent / "train_tts.log").read_text(encoding="utf-8")
    for stage in ("main", "tuning"):
        assert f"NaturalSpeech training stage: {stage}" in log, log[-4000:]
    checkpoints = sorted(trained_model_dir.glob("checkpoint_*.pth"))
    assert checkpoints, list(trained_model_dir.iterdir())
    assert list(trained_model_dir.glob("events.out.tfevents.*"))
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["model"]
    assert bool(state["memory_initialized"])
    assert int(state["step"]) >= 3
    assert (trained_model_dir / "config.json").is_file()
