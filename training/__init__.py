"""Training on (blind imbalanced) domains: datasets, models, losses, samplers, trainer, per-domain evaluation."""
