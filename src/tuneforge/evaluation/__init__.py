"""Evaluation stage: metrics, base-model baselines, comparison table, plots and reports."""
