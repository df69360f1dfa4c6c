"""Model stage: resolve and load base models and tokenizers (local folder, hub id, or the bundled default)."""
