"""Training: data preparation, augmentation, losses and the training loop."""
