"""Training user models: augmentation, the contrastive loss, the training loop, k-fold
cross-validation, and one-call jobs for front ends (`run`). Imports evaluation, never the reverse."""
