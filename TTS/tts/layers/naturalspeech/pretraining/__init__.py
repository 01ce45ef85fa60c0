"""Mixed-phoneme pre-training of the phoneme encoder (paper, Section 3.1): `config`, `corpus` and `model`, and the
sup-phoneme input the pre-trained encoder keeps in TTS (`sup_phoneme_embedding`)."""
