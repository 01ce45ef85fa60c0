"""Integration: the toolkit's own `train_tts` entry point trains NaturalSpeech through all four stages."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import make_ljspeech_config


@pytest.mark.slow
def test_train_tts_runs_all_stages_on_real_clips(tmp_path, ljspeech_dir):
    config = make_ljspeech_config(
        ljspeech_dir,
        tmp_path / "run",
        batch_size=4,
        eval_batch_size=2,
        epochs=1,
        warmup_steps=2,
        tuning_start_step=5,
        save_step=3,
        print_step=2,
        plot_step=2,
        run_eval=True,
        eval_split_size=2,
        test_delay_epochs=0,
    )
    config_path = tmp_path / "config.json"
    config.save_json(str(config_path))
    result = subprocess.run(
        [sys.executable, "-m", "TTS.bin.train_tts", "--config_path", str(config_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    for stage in ("main", "tuning"):
        assert f"NaturalSpeech training stage: {stage}" in log, log[-4000:]
    (run_dir,) = (tmp_path / "run").glob("run-*")
    checkpoints = sorted(run_dir.glob("checkpoint_*.pth"))
    assert checkpoints, list(run_dir.iterdir())
    assert list(run_dir.glob("events.out.tfevents.*"))
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)["model"]
    assert bool(state["memory_initialized"])
    assert int(state["step"]) >= 3
    assert Path(run_dir / "config.json").is_file()
