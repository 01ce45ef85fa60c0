"""Learning curves of the learning benchmark (score vs training CPU minutes) and spectrograms of synthesized clips.

Results file (`results.csv`, or `.json` holding a list of the same rows): one row per scored checkpoint.

=================== ======= ==================================================================================
column              type    meaning
=================== ======= ==================================================================================
`run`               str     model/run name: "naturalspeech", "vits", "ns-no-memory-bank", …
`cpu_minutes`       float   training CPU minutes spent when the checkpoint was saved (the x axis)
`step`              int     training step of the checkpoint
`<metric>`          float   the means of `scoring.score_sentences` (`scoring.METRICS`: `mcd_db`, `log_f0_rmse`,
                            `vuv_error`, `duration_mae_frames`, `duration_matched_fraction`, `length_ratio`,
                            `cer`, `dnsmos_ovrl`, `dnsmos_sig`, `dnsmos_bak`); empty when not measured
anything else       str/num kept as is (e.g. `num_sentences`, `checkpoint`)
=================== ======= ==================================================================================

Typical use (`run.py`)::

    scores = scoring.score_sentences(items, corpus_dir / "heldout")
    plots.append_results([plots.results_row("naturalspeech", cpu_minutes, step, scores)], out_dir / "results.csv")
    teacher = scoring.score_teacher(corpus_dir / "heldout", ids=[item.id for item in items])["means"]
    caption = plots.describe_setup(budget_minutes=60, model_params={...}, num_sentences=1200, hours=2.1, commit=...)
    plots.plot_learning_curves(plots.load_results(out_dir / "results.csv"), out_dir, teacher, caption)
"""

import csv
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import librosa
import librosa.display
import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from scoring import HOP_LENGTH, METRICS, load_wav

logger = logging.getLogger(__name__)

KEY_COLUMNS = ("run", "cpu_minutes", "step")
METRIC_LABELS = {
    "mcd_db": "MCD to the teacher (dB, lower is better)",
    "log_f0_rmse": "log-F0 RMSE (lower is better)",
    "vuv_error": "voiced/unvoiced disagreement (lower is better)",
    "duration_mae_frames": "phoneme duration MAE (frames, lower is better)",
    "duration_matched_fraction": "phonemes matched to the teacher's (higher is better)",
    "length_ratio": "length / teacher's length (1 is best)",
    "cer": "ASR character error rate (lower is better)",
    "dnsmos_ovrl": "DNSMOS overall (higher is better)",
    "dnsmos_sig": "DNSMOS signal (higher is better)",
    "dnsmos_bak": "DNSMOS background (higher is better)",
}


# --- results file -----------------------------------------------------------------------------------------------


def results_row(run: str, cpu_minutes: float, step: int, scores: dict, **extra) -> dict:
    """A results row from the output of `scoring.score_sentences` (its `means` and `num_sentences`)."""
    return {
        "run": run,
        "cpu_minutes": cpu_minutes,
        "step": step,
        **scores["means"],
        "num_sentences": scores["num_sentences"],
        **extra,
    }


def _parse(value: str) -> str | int | float:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def load_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV or JSON file; numbers parsed, empty CSV cells left out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        with path.open(newline="", encoding="utf-8") as file:
            rows = [{key: _parse(value) for key, value in row.items() if value != ""} for row in csv.DictReader(file)]
    missing = [row for row in rows if any(key not in row for key in KEY_COLUMNS)]
    if missing:
        raise ValueError(f"{path}: rows without {KEY_COLUMNS}: {missing[:3]}")
    return rows


def save_results(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write rows as CSV (the key columns, the metrics, then any other column) or as JSON if `path` ends in .json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(list(rows), indent=1) + "\n", encoding="utf-8")
        return path
    present = {key for row in rows for key in row}
    known = [*KEY_COLUMNS, *METRICS]
    columns = [key for key in known if key in present] + sorted(present - set(known))
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def append_results(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Add rows to a results file (created if missing)."""
    path = Path(path)
    existing = load_results(path) if path.is_file() else []
    return save_results([*existing, *rows], path)


# --- learning curves --------------------------------------------------------------------------------------------


def describe_setup(
    budget_minutes: float, model_params: dict[str, int], num_sentences: int, hours: float, commit: str
) -> str:
    """The caption of every learning curve: budget, model sizes, data and commit.

    Args:
        budget_minutes: Training CPU minutes of each run.
        model_params: Parameters per run name (e.g. inference parameters).
        num_sentences: Training sentences of the corpus.
        hours: Hours of training audio.
        commit: Git commit of the code that trained and scored.
    """
    sizes = ", ".join(f"{run} {params / 1e6:.1f}M" for run, params in model_params.items())
    return (
        f"budget {budget_minutes:g} CPU min per run; params: {sizes}; "
        f"data: Piper teacher, {num_sentences} sentences, {hours:.2f} h; commit {commit}"
    )


def learning_curve_figure(rows: Sequence[dict], metric: str, teacher: dict | None = None, caption: str = "") -> Figure:
    """One metric vs training CPU minutes: a line per run (sorted by CPU minutes), the teacher dashed."""
    fig, axis = plt.subplots(figsize=(8, 5))
    for run in dict.fromkeys(row["run"] for row in rows):
        points = sorted(
            (row["cpu_minutes"], row[metric])
            for row in rows
            if row["run"] == run and isinstance(row.get(metric), int | float) and not math.isnan(row[metric])
        )
        if points:
            axis.plot(*zip(*points), marker="o", label=run)
    if teacher is not None and metric in teacher and not math.isnan(teacher[metric]):
        axis.axhline(teacher[metric], color="black", linestyle="--", label="teacher")
    axis.set_xlabel("training CPU minutes")
    axis.set_ylabel(METRIC_LABELS.get(metric, metric))
    axis.grid(alpha=0.3)
    axis.legend()
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06 if caption else 0, 1, 1))
    plt.close(fig)
    return fig


def plot_learning_curves(
    rows: Sequence[dict],
    out_dir: str | os.PathLike,
    teacher: dict | None = None,
    caption: str = "",
    metrics: Sequence[str] = METRICS,
) -> list[Path]:
    """Write `learning_<metric>.png` into `out_dir` for every metric some row has.

    Args:
        rows: Results rows (`load_results`).
        out_dir: Output folder (created if missing).
        teacher: The teacher's value per metric (`scoring.score_teacher(...)["means"]`), drawn dashed.
        caption: Setup text under each figure (`describe_setup`).
        metrics: Metrics to plot.

    Returns:
        The PNG paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in metrics:
        if not any(metric in row for row in rows):
            continue
        path = out_dir / f"learning_{metric}.png"
        learning_curve_figure(rows, metric, teacher, caption).savefig(path, dpi=100)
        paths.append(path)
    logger.info(" > wrote %d learning curves to %s", len(paths), out_dir)
    return paths


ABLATION_METRICS = ("mcd_db", "log_f0_rmse", "duration_mae_frames", "length_ratio", "cer", "dnsmos_ovrl")


def ablation_figure(
    rows: Sequence[dict],
    cpu_minutes: float,
    teacher: dict | None = None,
    caption: str = "",
    metrics: Sequence[str] = ABLATION_METRICS,
) -> Figure:
    """One panel per metric, a horizontal bar per run at one budget (the row whose CPU minutes are nearest to
    `cpu_minutes` within a minute), the teacher as a dashed line: ablations have one or two budgets, not curves."""
    at_budget = {}
    for row in rows:
        if abs(row["cpu_minutes"] - cpu_minutes) <= 1.0:
            at_budget.setdefault(row["run"], row)
    if not at_budget:
        raise ValueError(f"no run has a row at {cpu_minutes:g} CPU-minutes")
    runs = list(at_budget)
    columns = 3
    fig, axes = plt.subplots(
        math.ceil(len(metrics) / columns), columns, figsize=(13, 1.2 + 0.45 * len(runs) * 2), squeeze=False
    )
    for axis, metric in zip(axes.flat, metrics):
        values = [at_budget[run].get(metric, math.nan) for run in runs]
        axis.barh(range(len(runs)), values, color=[f"C{index}" for index in range(len(runs))])
        axis.set_yticks(range(len(runs)), runs if axis in axes[:, 0] else [""] * len(runs))
        axis.invert_yaxis()  # first run on top, as in the tables
        if teacher is not None and not math.isnan(teacher.get(metric, math.nan)):
            axis.axvline(teacher[metric], color="black", linestyle="--", label="teacher")
        axis.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        axis.grid(axis="x", alpha=0.3)
    for axis in axes.flat[len(metrics) :]:
        axis.set_visible(False)
    fig.suptitle(f"ablations at {cpu_minutes:g} CPU-minutes (teacher dashed)")
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if caption else 0, 1, 1))
    plt.close(fig)
    return fig


# --- spectrograms -----------------------------------------------------------------------------------------------


def _show_mel(axis, wav_path: Path, title: str) -> None:
    waveform, sample_rate = load_wav(wav_path)
    mel = librosa.feature.melspectrogram(y=waveform, sr=sample_rate, n_fft=1024, hop_length=HOP_LENGTH, n_mels=80)
    image = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    librosa.display.specshow(
        image, sr=sample_rate, hop_length=HOP_LENGTH, x_axis="time", y_axis="mel", ax=axis, cmap="magma"
    )
    axis.set_title(title)


def save_spectrogram(
    wav_path: str | os.PathLike,
    png_path: str | os.PathLike | None = None,
    reference_wav: str | os.PathLike | None = None,
) -> Path:
    """Write the mel spectrogram of a WAV next to it (`<name>.png`), above the teacher's reference if given."""
    wav_path = Path(wav_path)
    png_path = Path(png_path) if png_path is not None else wav_path.with_suffix(".png")
    panels = [(wav_path, wav_path.stem)]
    if reference_wav is not None:
        panels.append((Path(reference_wav), "teacher reference"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), squeeze=False)
    for axis, (path, title) in zip(axes[:, 0], panels):
        _show_mel(axis, path, title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
