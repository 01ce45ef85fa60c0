"""Running NaturalSpeech around the paper's blocks: data, checkpoints, fine-tuning, Trainer hooks, ONNX export, plots,
text input."""
