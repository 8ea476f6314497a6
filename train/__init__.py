"""Model, loss and training (needs the `[train]` extra: torch, torchvision)."""
