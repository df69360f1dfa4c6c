"""Training stage: a transformers Trainer with tuneforge's sampler, callbacks and atomic checkpoints."""
