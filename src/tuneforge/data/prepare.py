"""Data stage orchestration: read and validate every source, clean, split, check leakage, report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneforge.config import RunConfig
from tuneforge.data.clean import clean_examples, record_hash
from tuneforge.data.coverage import coverage_warnings, tokenizer_coverage
from tuneforge.data.report import build_report
from tuneforge.data.sources import read_records
from tuneforge.data.split import find_leakage, remove_leakage, stratified_split
from tuneforge.errors import DataError
from tuneforge.tasks.base import RecordError, Task

Example = dict[str, Any]
_WORDS = {2: "two", 3: "three"}


@dataclass
class PreparedData:
    splits: dict[str, list[Example]]
    labels: list[str]
    report: dict[str, Any]


def _paths(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def load_examples(paths: list[str], cfg: RunConfig, task: Task, stats: dict[str, Any]) -> list[Example]:
    """Read and validate; the first invalid record stops (naming file:line) unless skip_invalid is set."""
    examples: list[Example] = []
    data = cfg.data
    for path in paths:
        invalid: list[tuple[str, int, RecordError]] = []
        count = 0
        for raw, file, line in read_records(path, data.format, task.name, cfg.model.allow_hub):
            count += 1
            try:
                example = task.parse(raw, data.columns, data.labels)
            except RecordError as err:
                invalid.append((file, err.line or line, err))
                if not data.skip_invalid and len(invalid) > 50:
                    break  # enough to report; no need to read a huge broken file to the end
                continue
            example["_src"] = f"{file}:{line}"
            example["_rid"] = record_hash(task.text_of(example))  # per-record fingerprint (tuneforge forget)
            examples.append(example)
        if invalid and not data.skip_invalid:
            file, line, err = invalid[0]
            raise DataError(str(err), file=file, line=line, fix=err.fix, more=len(invalid) - 1)
        if count == 0:
            raise DataError("no records found", file=path, fix="the file is empty; add examples or fix the path")
        stats[path] = {"records": count, "invalid": len(invalid),
                       "invalid_examples": [f"{f}:{n}: {e}" for f, n, e in invalid[:10]]}
    return examples


def _drop_untrainable(examples: list[Example], remove: bool, task: Task, tokenizer: Any, max_length: int,
                      steps: dict[str, Any]) -> tuple[list[Example], list[str]]:
    """Count (by reason) the examples that would train on nothing at max_length and remove them from the training
    data (user-given validation/test files are counted, as `<reason>_kept`, but kept, like every other filter).
    Returns the examples and a warning for each reason that removed more than 1% of them."""
    reasons = task.untrainable(examples, tokenizer, max_length)
    counts = Counter(r for r in reasons if r is not None)
    for reason, n in counts.items():
        steps[reason if remove else f"{reason}_kept"] = n
    if not remove or not counts:
        return examples, []
    warnings = [f"{n} of {len(examples)} training examples ({n / len(examples):.1%}) removed: "
                f"{reason.replace('_', ' ')} at data.max_length={max_length}; raise data.max_length or shorten "
                "the prompts" for reason, n in counts.items() if n / len(examples) > 0.01]
    kept = [ex for ex, r in zip(examples, reasons, strict=True) if r is None]
    steps.pop("output", None)
    steps["output"] = len(kept)  # re-added so that it stays the last step
    return kept, warnings


def _clean_all(raw: dict[str, list[Example]], cfg: RunConfig, task: Task, tokenizer: Any,
               lengths_of: Callable[[list[Example]], list[int]]) -> tuple[dict[str, Any], list[str]]:
    """Clean every split in place (`raw`); returns the cleaning steps per split and the warnings they raise."""
    data = cfg.data
    cleaning: dict[str, Any] = {}
    warnings: list[str] = []
    # User-given validation/test files are normalised (and redacted) but never filtered: they are the user's
    # yardstick, and dropping rows would make scores incomparable with anything else measured on them.
    keep_all = data.clean.model_copy(update={"dedupe": "none", "drop_conflicts": False, "min_tokens": 0,
                                             "max_tokens": None})
    for name in list(raw):
        if raw[name]:
            rules = data.clean if name == "train" else keep_all
            raw[name], cleaning[name] = clean_examples(raw[name], task, rules, lengths_of)
            raw[name], dropped = _drop_untrainable(raw[name], name == "train", task, tokenizer, data.max_length,
                                                   cleaning[name])
            warnings += dropped
    return cleaning, warnings


def _split(raw: dict[str, list[Example]], cfg: RunConfig, task: Task, seed: int) -> dict[str, list[Example]]:
    """The given files where there are some; the validation/test splits the user did not give, carved out of train
    (stratified, at the configured ratios renormalised over the missing splits)."""
    data = cfg.data
    splits = {"train": raw["train"], "validation": raw["validation"], "test": raw["test"]}
    missing = [name for name in ("validation", "test") if not raw[name]]
    if missing:
        ratios = {"train": data.split.train, "validation": data.split.validation, "test": data.split.test}
        for name in ("validation", "test"):
            if name not in missing:
                ratios[name] = 0.0
        total = sum(ratios.values())
        parts = stratified_split(raw["train"], task, (ratios["train"] / total, ratios["validation"] / total,
                                                       ratios["test"] / total), seed, data.split.stratify)
        splits["train"] = parts["train"]
        for name in missing:
            splits[name] = parts[name]
    for name in ("validation", "test"):
        if not splits[name]:
            raise DataError(f"the {name} split is empty", file=_paths(data.train)[0],
                            fix=f"give data.{name}, or raise data.split.{name} / add more data")
    return splits


def prepare_data(cfg: RunConfig, task: Task, tokenizer: Any) -> PreparedData:
    data = cfg.data
    sources: dict[str, Any] = {}
    raw = {name: load_examples(_paths(getattr(data, name)), cfg, task, sources)
           for name in ("train", "validation", "test")}

    def lengths_of(examples: list[Example]) -> list[int]:
        return task.token_lengths(examples, tokenizer)

    cleaning, warnings = _clean_all(raw, cfg, task, tokenizer, lengths_of)
    if not raw["train"]:
        raise DataError("no training examples left after cleaning", file=_paths(data.train)[0],
                        fix="check the data.clean settings (length filters, dedupe) or the data itself")

    split_seed = data.split.seed if data.split.seed is not None else cfg.training.seed
    splits = _split(raw, cfg, task, split_seed)

    leakage = find_leakage(splits, task)
    if data.clean.remove_leakage and any(leakage.values()):
        splits = remove_leakage(splits, task)
        leakage["removed"] = True

    if not splits["train"]:
        raise DataError("no training examples left: every one also occurs in validation or test",
                        file=_paths(data.train)[0], fix="use different files for train and test, or set "
                        "data.clean.remove_leakage: false to keep the overlap (and inflate the scores)")
    augmentation: dict[str, Any] = {}
    if data.augment is not None:  # the training split only, after the split and the leakage check
        from tuneforge.data.augment import augment_split

        splits["train"], augmentation = augment_split(splits, cfg, task)
    labels = list(data.labels) if data.labels else task.label_list(splits)
    if len(labels) < task.min_labels:
        raise DataError(f"only one label ({labels[0] if labels else 'none'}) in the data", file=_paths(data.train)[0],
                        fix=f"{task.name} needs at least {_WORDS.get(task.min_labels, task.min_labels)} labels; "
                            "check data.columns.label")
    lengths = {name: lengths_of(exs) for name, exs in splits.items()}
    coverage = tokenizer_coverage(splits["train"], task, tokenizer, seed=split_seed)
    warnings += coverage_warnings(coverage)
    report = build_report(splits, task, lengths, data.max_length, sources=sources, cleaning=cleaning,
                          leakage=leakage, split_seed=split_seed, labels=labels, tokenizer_coverage=coverage,
                          warnings=warnings, **({"augmentation": augmentation} if augmentation else {}))
    unseen = sorted(set(labels) - set(report["label_distribution"]["train"]))
    if unseen:
        report["labels_missing_from_train"] = unseen
    return PreparedData(splits=splits, labels=labels, report=report)
