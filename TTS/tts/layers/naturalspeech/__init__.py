"""Components of NaturalSpeech (Tan et al., 2022, arXiv 2205.04421) that the Coqui TTS toolkit does not have.

- the modules at this level are the paper's blocks: phoneme encoder, durator, flow, memory bank, soft-DTW, the KL
  terms and losses, alignment search and the training stages;
- `pretraining/`: mixed-phoneme pre-training of the phoneme encoder (config, corpus, masked-LM model);
- `runtime/`: what running the model needs around the paper: data loading, checkpoints, Trainer hooks, ONNX export,
  plots, text input checks.

The paper's modules import nothing from `pretraining/` or `runtime/`, so the model's maths reads on its own.
"""
