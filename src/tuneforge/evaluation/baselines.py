"""Base-model baselines measured in the same run as fine-tuning: a linear probe on frozen features, and zero-shot
classification by embedding similarity to the label names."""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                     seed: int = 0) -> Any:
    """Logistic regression on frozen features; C chosen on the validation split (not on test)."""
    from sklearn.linear_model import LogisticRegression

    best, best_score = None, -1.0
    for c in (1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed)
        clf.fit(x_train, y_train)
        score = float((clf.predict(x_val) == y_val).mean()) if len(y_val) else 0.0
        if score > best_score:
            best, best_score = clf, score
    return best


def label_description(label: str) -> str:
    """A readable description of a label name: 'card_not_working' -> 'card not working'."""
    return label.replace("_", " ").replace("-", " ").strip()


def zero_shot_predict(text_vectors: np.ndarray, label_vectors: np.ndarray) -> np.ndarray:
    """Index of the most similar label for each text (vectors are L2-normalised, so dot = cosine)."""
    return (text_vectors @ label_vectors.T).argmax(axis=1)
