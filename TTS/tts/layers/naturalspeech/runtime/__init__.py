"""Running NaturalSpeech around the paper's blocks: data, checkpoints, Trainer hooks, ONNX export, plots, text input."""
