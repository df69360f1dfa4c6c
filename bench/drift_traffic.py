"""The simulated traffic of bench/drift_sim.py: BANKING77 split into the run's training intents and held-back ones,
days of requests drifting by a given share (held-back intents, or known intents in new phrasings), and the month's
schedule of shares."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

HELD_BACK = 10
FEEDBACK_SHARE = 0.6  # the share of inputs whose true label comes back on /v1/feedback
PER_INTENT = 30
KNOWN_POOL = 2010
TYPOS = "qwertyuiopasdfghjklzxcvbnm"
CASUAL = ["hey so ", "yo ", "quick q: ", "ok so ", "help!! ", "hiya, "]


def load_banking(data: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[str]]:
    def read(name: str) -> list[dict[str, str]]:
        with open(data / name, newline="", encoding="utf-8") as fh:
            return [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(fh)]

    return read("train.csv"), read("test.csv"), json.loads((data / "categories.json").read_text())


def split_intents(train: list[dict[str, str]], test: list[dict[str, str]], labels: list[str], seed: int
                  ) -> dict[str, Any]:
    """The run's training rows, and traffic pools it never saw: known intents and held-back intents."""
    rng = random.Random(seed)
    held = set(rng.sample(sorted(labels), HELD_BACK))
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in train:
        by_label.setdefault(row["label"], []).append(row)
    training, spare = [], []
    for label, rows in sorted(by_label.items()):
        rows = rows[:]
        rng.shuffle(rows)
        if label in held:
            spare += rows
        else:
            training += rows[:PER_INTENT]
            spare += rows[PER_INTENT:]
    pool = spare + test
    rng.shuffle(pool)
    per_label: dict[str, list[dict[str, str]]] = {}
    for row in pool:
        if row["label"] not in held:
            per_label.setdefault(row["label"], []).append(row)
    # a fixed, label-balanced pool (as the training rows are): months draw from it, so the monitor embeds each
    # text once (CPU budget)
    share = KNOWN_POOL // len(per_label)
    known = [r for rows in per_label.values() for r in rows[:share]]
    return {"held": sorted(held), "training": training, "known": known,
            "novel": [r for r in pool if r["label"] in held]}


def rephrase(text: str, rng: random.Random) -> str:
    """A new phrasing: casual opener, lower case, a typo or two, no final punctuation."""
    chars = list(text.lower().rstrip("?.!"))
    for _ in range(rng.randint(1, 2)):
        if len(chars) > 3:
            chars[rng.randrange(len(chars))] = rng.choice(TYPOS)
    return rng.choice(CASUAL) + "".join(chars)


def day_traffic(pools: dict[str, Any], shift: float, n: int, rng: random.Random) -> list[dict[str, str]]:
    """n inputs: a share `shift` of them drifted (half a held-back intent, half a known intent rephrased)."""
    out = []
    for _ in range(n):
        if rng.random() < shift:
            if rng.random() < 0.5:
                out.append(dict(rng.choice(pools["novel"])))
            else:
                row = rng.choice(pools["known"])
                out.append({"text": rephrase(row["text"], rng), "label": row["label"]})
        else:
            out.append(dict(rng.choice(pools["known"])))
    return out


def month_shifts(weeks: str) -> list[float]:
    """Share of drifted traffic per day; 'drift': the month of the issue, 'none': a month like training."""
    if weeks == "none":
        return [0.0] * 30
    week2 = [0.10 + 0.05 * d for d in range(7)]  # 10% -> 40%
    return [0.0] * 7 + week2 + [0.70] * 7 + [0.70] * 9
