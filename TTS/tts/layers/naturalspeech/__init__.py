"""Components of NaturalSpeech (Tan et al., 2022, arXiv 2205.04421) that the Coqui TTS toolkit does not have."""
