"""Durations for training: alignment search inside the model, and external duration labels."""

import numpy as np
import pytest
import torch

from TTS.tts.layers.naturalspeech.alignment import load_duration_labels, search_durations
from TTS.tts.utils.helpers import sequence_mask


def test_search_durations_recovers_a_planted_alignment():
    # three tokens with well separated means; frames drawn from them in order 4, 2, 3 frames long
    means = torch.tensor([[[-3.0, 0.0, 3.0]]]).repeat(1, 4, 1)  # [B=1, C=4, T_text=3]
    true_durations = torch.tensor([4, 2, 3])
    z = torch.repeat_interleave(means, true_durations, dim=2) + 0.1 * torch.randn(1, 4, 9)
    x_mask = torch.ones(1, 1, 3)
    y_mask = torch.ones(1, 1, 9)
    durations, path = search_durations(z, means, torch.zeros_like(means), x_mask, y_mask)
    assert durations[0].tolist() == true_durations.tolist()
    assert path.shape == (1, 3, 9) and torch.all(path.sum(1) == 1)


def test_search_durations_respects_padding():
    means = torch.randn(2, 4, 5)
    z = torch.randn(2, 4, 12)
    x_mask = sequence_mask(torch.tensor([5, 3]), 5).unsqueeze(1).float()
    y_mask = sequence_mask(torch.tensor([12, 7]), 12).unsqueeze(1).float()
    durations, _ = search_durations(z, means, torch.zeros_like(means), x_mask, y_mask)
    assert durations.sum(1).tolist() == [12, 7]
    assert durations[1, 3:].sum() == 0
    assert torch.all(durations[1, :3] >= 1)


def write_label(folder, stem, values):
    np.save(folder / f"{stem}.npy", np.asarray(values, dtype=np.int64))


def test_duration_labels_are_read_per_file(tmp_path):
    write_label(tmp_path, "a", [2, 3, 1])
    write_label(tmp_path, "b", [4, 4])
    durations = load_duration_labels(tmp_path, ["wavs/a.wav", "b.wav"], torch.tensor([3, 2]), torch.tensor([6, 8]))
    assert durations.tolist() == [[2, 3, 1], [4, 4, 0]]


def test_duration_label_off_by_a_frame_is_corrected_on_the_last_token(tmp_path):
    write_label(tmp_path, "a", [2, 3, 1])
    durations = load_duration_labels(tmp_path, ["a.wav"], torch.tensor([3]), torch.tensor([7]))
    assert durations.tolist() == [[2, 3, 2]]


@pytest.mark.parametrize(
    ("values", "token_length", "frames", "message"),
    [
        ([2, 3], 3, 5, "has 2 entries but the tokenized text has 3 tokens"),
        ([2, 3, 1], 3, 20, "sums to 6 frames but the audio has 20 frames"),
    ],
)
def test_duration_label_mismatch_is_a_clear_error(tmp_path, values, token_length, frames, message):
    write_label(tmp_path, "a", values)
    with pytest.raises(ValueError, match=message):
        load_duration_labels(tmp_path, ["a.wav"], torch.tensor([token_length]), torch.tensor([frames]))


def test_missing_duration_label_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"No duration label for 'x\.wav'"):
        load_duration_labels(tmp_path, ["x.wav"], torch.tensor([3]), torch.tensor([6]))
