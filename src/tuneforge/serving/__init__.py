"""OpenAI-compatible serving of finished runs: `tuneforge serve` (see docs/serve.md)."""
