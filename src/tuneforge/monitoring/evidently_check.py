"""Optional cross-check with Evidently (extra `monitor`): its DataDriftPreset over the tabular features of the
whole period (token length, out-of-vocabulary rate, confidence, predicted label) against the reference, saved as
evidently.html, with its per-column p-values copied into the verdict for comparison.

Evidently does not decide the verdict: it tests each column at 0.05 on its own, with no correction across columns
or windows, and has no embedding two-sample test with a permutation p-value; tuneforge's verdict needs one
corrected family of p-values per window (see docs/monitoring.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuneforge.monitoring.log_reader import Served
from tuneforge.monitoring.reference import Reference, oov_rates


def evidently_status() -> tuple[bool, str]:
    """(usable, why not). Evidently 0.7 does not import with pandas 3 (it uses a removed pandas helper)."""
    import importlib.metadata
    import importlib.util

    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry stays off, as everything in tuneforge
    if importlib.util.find_spec("evidently") is None:
        return False, "evidently is not installed"
    pandas_major = int(importlib.metadata.version("pandas").split(".")[0])
    if pandas_major >= 3:  # known at 0.7.23; checked before importing, which takes ~20 s even when it fails
        return False, f"evidently {importlib.metadata.version('evidently')} does not import with pandas " \
                      f"{importlib.metadata.version('pandas')} (it needs pandas < 3)"
    try:
        import evidently  # noqa: F401
        from evidently import DataDefinition, Dataset, Report  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401
    except Exception as exc:  # ImportError, or an incompatible pandas raising at import
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def _frame(lengths: Any, oov: Any, conf: list[float] | None, labels: list[str | None] | None) -> Any:
    import pandas as pd

    data: dict[str, Any] = {"token_length": list(lengths), "oov_rate": list(oov)}
    if conf is not None:
        data["confidence"] = conf
    if labels is not None:
        data["predicted_label"] = [x or "" for x in labels]
    return pd.DataFrame(data)


def evidently_check(view: Any, ref: Reference, rows: list[Served], out_dir: Path) -> dict[str, Any]:
    usable, why = evidently_status()
    if not usable:
        return {"available": False, "reason": why, "fix": "pip install 'tuneforge[monitor]' (needs pandas<3)"}
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    texts = [r.text for r in rows]
    labelled = bool(ref.predictions) and isinstance(ref.predictions[0], dict) and "score" in ref.predictions[0]
    reference = _frame(ref.lengths, ref.oov, [p["score"] for p in ref.predictions] if labelled else None,
                       [p["label"] for p in ref.predictions] if labelled else None)
    current = _frame(view.lengths(texts), oov_rates(texts, ref.vocab),
                     [r.score or 0.0 for r in rows] if labelled else None,
                     [r.label for r in rows] if labelled else None)
    numeric = [c for c in ("token_length", "oov_rate", "confidence") if c in reference]
    definition = DataDefinition(numerical_columns=numeric,
                                categorical_columns=["predicted_label"] if labelled else [])
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                               Dataset.from_pandas(reference, data_definition=definition))
    snapshot.save_html(str(out_dir / "evidently.html"))
    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {"method": config.get("method"), "value": metric["value"],
                                         "threshold": config.get("threshold")}
    return {"available": True, "report": "evidently.html", "scope": "whole period vs reference",
            "columns": columns}
