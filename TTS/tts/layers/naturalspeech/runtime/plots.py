"""Dashboard figures of a NaturalSpeech training step: prior vs posterior, durations and attention, mel slices."""

import matplotlib

matplotlib.use("Agg")

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from TTS.utils.audio import AudioProcessor
from TTS.vocoder.utils.generic_utils import plot_results


def plot_training_figures(outputs: dict, ap: AudioProcessor) -> dict[str, Figure]:
    """Figures for the first item of a batch.

    Args:
        outputs: Generator outputs of `Naturalspeech.forward`.
        ap: Audio processor for the mel spectrograms of the waveform slices.
    """
    figures = plot_results(outputs["model_outputs"], outputs["waveform_seg"], ap)
    figures["prior_vs_posterior"] = plot_prior_vs_posterior(
        outputs["prior_mean"][0].detach().float().cpu().numpy(),
        outputs["posterior_mean"][0].detach().float().cpu().numpy(),
    )
    figures["durations_attention"] = plot_durations_attention(
        outputs["durations"][0].detach().float().cpu().numpy(),
        outputs["alignments"][0].detach().float().cpu().numpy(),
    )
    return figures


def plot_prior_vs_posterior(prior_mean, posterior_mean) -> Figure:
    """Frame-level prior mean `[C, T_prior]` above the posterior mean `[C, T_feats]`."""
    fig, axes = plt.subplots(2, 1, figsize=(12, 6))
    for axis, data, title in ((axes[0], prior_mean, "prior mean"), (axes[1], posterior_mean, "posterior mean")):
        image = axis.imshow(data, aspect="auto", origin="lower", interpolation="none")
        axis.set_title(title)
        axis.set_ylabel("channel")
        fig.colorbar(image, ax=axis)
    axes[1].set_xlabel("frame")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_durations_attention(durations, attention) -> Figure:
    """Token durations `[T_text]` and the upsampling attention `[T_feats, T_text]`."""
    fig, axes = plt.subplots(2, 1, figsize=(12, 6), height_ratios=[1, 2])
    axes[0].bar(range(len(durations)), durations)
    axes[0].set_ylabel("frames")
    axes[0].set_title("token durations")
    axes[1].imshow(attention.T, aspect="auto", origin="lower", interpolation="none")
    axes[1].set_xlabel("frame")
    axes[1].set_ylabel("token")
    fig.tight_layout()
    plt.close(fig)
    return fig
