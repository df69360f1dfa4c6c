"""`data.augment.keep: if_better`: augmentation is kept only when validation improves.

Two normal runs from one config, same seed and budget: `<name>-plain` (no augmentation) and `<name>-augmented`.
Both are scored on their validation split (the same rows: augmentation never touches it, and this is checked by
fingerprint) with a bootstrap CI and a paired permutation test; the augmented run is kept when its validation
metric is higher. Both runs stay recorded; the choice is written to `<output_dir>/<name>.augment-choice.json` and
into both run folders (augment_choice.json). The test split plays no part in the choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig
from tuneforge.errors import RunError
from tuneforge.registry.files import read_json, write_json


def _variants(cfg: RunConfig) -> dict[str, RunConfig]:
    assert cfg.data.augment is not None
    always = cfg.data.augment.model_copy(update={"keep": "always"})
    return {"plain": cfg.model_copy(update={"name": f"{cfg.name}-plain",
                                            "data": cfg.data.model_copy(update={"augment": None})}),
            "augmented": cfg.model_copy(update={"name": f"{cfg.name}-augmented",
                                                "data": cfg.data.model_copy(update={"augment": always})})}


def _finished(run_dir: Path, result_type: Any) -> Any:
    """A sub-run that finished before a --resume: its result read back instead of training it again."""
    metrics = read_json(run_dir / "metrics.json")
    return result_type(run_dir, metrics["test"], metrics["baselines"], metrics["comparison"], metrics["train"])


def _validation(run_dir: Path) -> tuple[Any, str]:
    from tuneforge.registry.loaded_run import load_run

    run = load_run(run_dir)
    rows = [json.loads(line) for line in (run_dir / "data" / "validation.jsonl").read_text(encoding="utf-8")
            .splitlines() if line.strip()]
    result = run.task.evaluate(run.model(), run.tokenizer, rows, run.labels, run.max_length, 64)
    run.release()
    return result, run.task.primary_metric


def compare_on_validation(plain_dir: Path, augmented_dir: Path, seed: int) -> dict[str, Any]:
    """Which run to keep, by validation metric (CI and paired test recorded with it)."""
    import numpy as np

    from tuneforge.evaluation.stats import bootstrap_ci, higher_is_better, metric_fn, paired_permutation_test

    prints = [read_json(d / "data" / "report.json")["fingerprints"]["validation"] for d in (plain_dir, augmented_dir)]
    if prints[0] != prints[1]:
        raise RunError("the two runs were validated on different rows", fix="report this: augmentation must "
                                                                            "leave the validation split alone")
    (plain, metric), (augmented, _) = _validation(plain_dir), _validation(augmented_dir)
    fn = metric_fn(metric)
    refs = np.asarray(plain.references)
    scores = {}
    for name, result in (("plain", plain), ("augmented", augmented)):
        ci = bootstrap_ci(refs, np.asarray(result.predictions), fn, seed=seed)
        scores[name] = {"run": str(plain_dir if name == "plain" else augmented_dir), "metric": metric,
                        "validation": ci.point, "ci_low": ci.low, "ci_high": ci.high, "confidence": ci.confidence}
    test = paired_permutation_test(refs, np.asarray(augmented.predictions), np.asarray(plain.predictions), fn,
                                   seed=seed)
    gain = test.difference if higher_is_better(metric) else -test.difference
    kept = "augmented" if gain > 0 else "plain"  # a tie keeps the plain run: the simpler data
    return {"kept": kept, "kept_run": scores[kept]["run"], "metric": metric, "validation_rows": len(refs),
            "gain": gain, "p_value": test.p_value, "significant": test.significant(), "runs": scores,
            "rule": "augmented kept when its validation metric is higher than the plain run's"}


def train_keeping_better(cfg: RunConfig, train: Callable[..., Any], result_type: Any, *, resume: bool = False,
                         **kwargs: Any) -> Any:
    """Train both variants (`train` is api.train, `result_type` api.RunResult), keep the better by validation;
    returns the kept run's result."""
    results = {}
    for name, variant in _variants(cfg).items():
        if resume and (variant.run_dir / "metrics.json").is_file():
            results[name] = _finished(variant.run_dir, result_type)
        else:
            results[name] = train(variant, resume=resume and variant.run_dir.is_dir(), **kwargs)
    choice = compare_on_validation(results["plain"].run_dir, results["augmented"].run_dir, cfg.training.seed)
    write_json(Path(cfg.output_dir) / f"{cfg.name}.augment-choice.json", choice)
    for result in results.values():
        write_json(result.run_dir / "augment_choice.json", choice)
    return results[choice["kept"]]
