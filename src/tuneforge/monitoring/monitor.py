"""`tuneforge monitor`: the request log of one served run, cut into windows, each tested against the run's held-out
data; a verdict (ok / warn / drift), report.html and verdict.json.

False alarms: each window runs ~6 tests, a month has ~30 windows. Within a window, Holm's correction keeps the
chance of any false rejection at `alpha`; across windows, drift is declared only when `persistence` consecutive
windows reject (one rejected window alone is a warning). With alpha 0.01 and persistence 2 a month of daily windows
of unchanged traffic raises a false alarm with probability about 30 x 0.01² = 0.3% if windows were independent;
bench/drift_sim.py measures it on real traffic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.monitoring.drift import holm
from tuneforge.monitoring.log_reader import MonitorError, Served, read_served, require_rows
from tuneforge.monitoring.reference import (
    Reference,
    as_text,
    held_out_examples,
    input_of,
    oov_rates,
    reply_of,
    training_vocab,
)
from tuneforge.monitoring.window_tests import input_tests, prediction_tests


@dataclass(frozen=True)
class MonitorSettings:
    since_s: float = 7 * 86400
    window_s: float = 86400
    alpha: float = 0.01
    persistence: int = 2
    min_requests: int = 20
    permutations: int = 1000
    now: float | None = None  # end of the monitored period (default: the current time); bench and tests set it
    seed: int = 0


@dataclass
class RunView:
    """The monitored run as monitoring uses it: embeddings, token lengths, predictions (model loaded once)."""

    run: Any
    _encoder: Any = field(default=None, repr=False)
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _references: dict[int, Reference] = field(default_factory=dict, repr=False)

    def reference(self, seed: int) -> Reference:
        """The run's reference, built once per view (the held-out data does not change between checks)."""
        if seed not in self._references:
            self._references[seed] = build_reference(self, seed)
        return self._references[seed]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`; each distinct text is embedded once per view (`--watch` re-checks the same rows)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            for text, vec in zip(todo, self._embed(todo), strict=True):
                self._vectors[text] = vec
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not self.run.generative:
            return np.asarray(self.run.embed(texts), dtype=np.float32)
        # generative runs have no encoder of their own: traffic and reference both go through the bundled MiniLM
        from tuneforge.evaluation.embeddings import load_encoder, sentence_embeddings
        from tuneforge.models.loading import default_model_path, load_tokenizer

        if self._encoder is None:
            path = str(default_model_path())
            self._encoder = (load_encoder(path), load_tokenizer(path, False))
        return np.asarray(sentence_embeddings(*self._encoder, texts), dtype=np.float32)

    def lengths(self, texts: list[str]) -> np.ndarray:
        tokenizer = self.run.load_tokenizer()
        return np.asarray([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]], dtype=float)

    def predict(self, inputs: list[Any]) -> list[Any]:
        return [] if self.run.generative else self.run.predict(inputs)


def build_reference(view: RunView, seed: int = 0) -> Reference:
    examples, source = held_out_examples(view.run.path, seed)
    inputs = [input_of(ex) for ex in examples]
    texts = [as_text(x) for x in inputs]
    vocab = training_vocab(view.run.path)
    labels = [ex.get("label") if isinstance(ex.get("label"), str) else None for ex in examples]
    return Reference(source, inputs, labels, vocab, view.embed(texts), view.lengths(texts), oov_rates(texts, vocab),
                     view.predict(inputs), [reply_of(ex) for ex in examples])


def _windows(settings: MonitorSettings, end: float) -> list[tuple[float, float]]:
    count = max(1, round(settings.since_s / settings.window_s))
    start = end - count * settings.window_s
    return [(start + i * settings.window_s, start + (i + 1) * settings.window_s) for i in range(count)]


def check_window(view: RunView, ref: Reference, rows: list[Served], span: tuple[float, float],
                 settings: MonitorSettings, index: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"start": span[0], "end": span[1], "requests": len(rows)}
    if len(rows) < settings.min_requests:
        return {**entry, "status": "insufficient", "tests": [],
                "note": f"fewer than {settings.min_requests} inputs; not tested"}
    texts = [r.text for r in rows]
    tests = input_tests(ref, view.embed(texts), view.lengths(texts), oov_rates(texts, ref.vocab),
                        settings.seed + index, settings.permutations)
    more, summary = prediction_tests(ref, rows)
    tests = holm(tests + more)
    rejected = [t.name for t in tests if (t.p_adjusted or 1.0) < settings.alpha]
    summary["mean_oov_rate"] = float(np.mean(oov_rates(texts, ref.vocab)))
    summary["mean_token_length"] = float(np.mean(view.lengths(texts)))
    return {**entry, "status": "drift" if rejected else "ok", "rejected": rejected,
            "tests": [t.as_dict() for t in tests], **summary}


@dataclass
class Checked:
    """One check's verdict and what it was computed from (curation and Evidently reuse the loaded run)."""

    verdict: dict[str, Any]
    view: RunView
    reference: Reference
    rows: list[Served]


def monitor(run_dir: Path, log_file: Path, settings: MonitorSettings, since_text: str = "",
            view: RunView | None = None, names: list[str] | None = None) -> Checked:
    """The verdict (see verdict.py) for the run's traffic in the period ending at `settings.now`; pass the `view`
    of an earlier check to reuse its loaded model and embeddings. `names`: the model names requests used (default:
    the run's folder name; add the registered name when the server answered it through `champion`)."""
    from tuneforge.monitoring.verdict import decide
    from tuneforge.registry.loaded_run import load_run

    run = view.run if view is not None else load_run(run_dir)
    end = settings.now if settings.now is not None else time.time()
    spans = _windows(settings, end)
    names = names or [run.name]
    rows = read_served(log_file, names, spans[0][0], end)
    require_rows(rows, log_file, names[0] if len(names) == 1 else names,
                 since_text or f"{settings.since_s / 86400:g} days")
    view = view or RunView(run)
    ref = view.reference(settings.seed)
    if len(ref.inputs) < settings.min_requests:
        raise MonitorError(f"{run_dir / 'data'}: only {len(ref.inputs)} held-out examples to compare traffic with",
                           fix=f"train with at least {settings.min_requests} validation/test examples")
    windows = []
    for i, span in enumerate(spans):
        in_window = [r for r in rows if span[0] <= r.time < span[1]]
        windows.append(check_window(view, ref, in_window, span, settings, i))
    return Checked(decide(names[0], str(log_file), windows, settings, ref.source, len(ref.inputs)), view, ref, rows)
