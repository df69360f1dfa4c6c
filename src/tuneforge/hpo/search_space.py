"""The search space of a sweep: `sweep.params` (dotted config key -> SearchRange) checked against the config schema
before any trial runs, turned into Optuna distributions, and sampled into plain config values."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from tuneforge.config import SearchRange, parse_config
from tuneforge.errors import ConfigError

# Keys that decide where trials go or what the sweep is: searching them would break the sweep itself.
NOT_SEARCHABLE = ("name", "output_dir", "sweep")
EXAMPLE = "sweep: {params: {training.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}}}"


def assign(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted key in a raw config dict (as `--set` does, but with a Python value: no YAML re-parsing, which
    would read 1e-05 as a string)."""
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("task", "method"):  # `method: lora` shorthand
            child = {"name": child}
        node[part] = child if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value


def with_params(raw: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for key, value in params.items():
        assign(out, key, value)
    return out


def _check_value(raw: dict[str, Any], key: str, value: Any, source: str | Path) -> None:
    """Apply one value as an override and re-validate the whole config; errors name `sweep.params.<key>`."""
    try:
        parse_config(with_params(raw, {key: value}), source)
    except ConfigError as exc:
        bad = exc.key or key
        fix = exc.fix
        match = re.fullmatch(r"did you mean '(.+)'\?", fix or "")
        if match and "." in bad:  # the suggestion is for the last part: give the whole dotted key
            fix = f"did you mean '{bad.rsplit('.', 1)[0]}.{match.group(1)}'?"
        detail = exc.message
        for prefix in (f"{exc.file}: " if exc.file is not None else "", f"key '{exc.key}': " if exc.key else ""):
            detail = detail.removeprefix(prefix)
        what = "unknown config key" if detail.startswith("unknown key") else \
            f"value {value!r} is not allowed for {bad}: {detail}"
        raise ConfigError(what, file=source, key=f"sweep.params.{key}", fix=fix) from None


def _is_whole(x: float) -> bool:
    return float(x).is_integer()


def build_space(raw: dict[str, Any], params: dict[str, SearchRange], source: str | Path = "<config>"
                ) -> dict[str, BaseDistribution]:
    """Validate every searched key against the config (both ends of a range, every choice) and return Optuna
    distributions. Integer-only settings (batch size, LoRA rank, ...) given whole-number bounds are searched over
    integers even without `integer: true`."""
    if not params:
        raise ConfigError("nothing to search: sweep.params is empty", file=source, key="sweep.params",
                          fix=f"add the keys to search, e.g. {EXAMPLE}")
    space: dict[str, BaseDistribution] = {}
    for key, rng in params.items():
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise ConfigError(f"'{key}' cannot be searched (it names the runs or the sweep itself)", file=source,
                              key=f"sweep.params.{key}", fix="search training, method, data or model keys")
        if rng.choices is not None:
            for choice in rng.choices:
                if not (choice is None or isinstance(choice, bool | int | float | str)):
                    raise ConfigError(f"choice {choice!r} is not a number, string, boolean or null", file=source,
                                      key=f"sweep.params.{key}", fix="search lists/mappings one key at a time")
                _check_value(raw, key, choice, source)
            space[key] = CategoricalDistribution(rng.choices)
            continue
        assert rng.low is not None and rng.high is not None  # SearchRange guarantees a range or choices
        integer = rng.integer
        if not integer and _is_whole(rng.low) and _is_whole(rng.high) and (rng.step is None or _is_whole(rng.step)):
            mid = (rng.low + rng.high) / 2 + 0.37  # a fractional probe: rejected by integer-only settings
            try:
                _check_value(raw, key, mid, source)
            except ConfigError:
                integer = True
        if integer and not (_is_whole(rng.low) and _is_whole(rng.high)):
            raise ConfigError("an integer range needs whole-number low and high", file=source,
                              key=f"sweep.params.{key}", fix="e.g. {low: 8, high: 64}")
        if rng.log and rng.step is not None:
            raise ConfigError("a range cannot be both log-scaled and stepped", file=source,
                              key=f"sweep.params.{key}", fix="drop `step` or `log`")
        ends = (int(rng.low), int(rng.high)) if integer else (rng.low, rng.high)
        for end in ends:
            _check_value(raw, key, end, source)
        if integer:
            step = int(rng.step or 1)
            if step != rng.step and rng.step is not None:
                raise ConfigError("an integer range needs a whole-number step", file=source,
                                  key=f"sweep.params.{key}", fix="e.g. step: 8")
            space[key] = IntDistribution(int(rng.low), int(rng.high), log=rng.log, step=step)
        else:
            space[key] = FloatDistribution(rng.low, rng.high, log=rng.log, step=rng.step)
    return space


def suggest(trial: Any, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """Sample every searched key for one trial (through the public suggest API, so fixed/enqueued values apply)."""
    params: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            params[key] = trial.suggest_categorical(key, list(dist.choices))
        elif isinstance(dist, IntDistribution):
            params[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            assert isinstance(dist, FloatDistribution)
            params[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return params


def format_value(value: Any) -> str:
    """Short, readable parameter values for tables (4 significant digits)."""
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.4g}"
    return str(value)
