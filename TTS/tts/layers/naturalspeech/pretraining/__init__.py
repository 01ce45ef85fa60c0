"""Mixed-phoneme pre-training of the phoneme encoder (paper, Section 3.1): `config`, `corpus` and `model`."""
