"""Turn pydantic validation errors into one clear message naming the key, with the nearest valid key suggested."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tuneforge.errors import ConfigError


def _model_classes(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation may hold (unwrapping Optional, Union and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_model_classes(arg))
    return out


def _model_at(root: type[BaseModel], loc: tuple[Any, ...], raw: Any) -> type[BaseModel] | None:
    """Walk the config schema along an error location (handling the task/method discriminated unions)."""
    model: type[BaseModel] | None = root
    node = raw
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        candidates = _model_classes(model.model_fields[part].annotation)
        node = node.get(part) if isinstance(node, dict) else None
        if len(candidates) > 1:  # a plug-in union: choose by the `name` the user wrote
            name = node.get("name") if isinstance(node, dict) else node
            candidates = [c for c in candidates if c.model_fields["name"].default == name
                          or typing.get_args(c.model_fields["name"].annotation) == (name,)]
        model = candidates[0] if len(candidates) == 1 else None
    return model


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts the discriminator value into the location ("method", "lora", "r"); users never wrote it.
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] in ("task", "method") and len(out) == 1:
            continue
        out.append(part)
    return tuple(out)


def explain_validation_error(exc: ValidationError, raw: dict[str, Any], source: str | Path,
                             root: type[BaseModel]) -> ConfigError:
    """One ConfigError for pydantic's first problem; `root` is the model that was validated (RunConfig)."""
    errors = exc.errors()
    first = errors[0]
    loc = _strip_union_tags(tuple(first["loc"]))
    dotted = ".".join(str(p) for p in loc) or "<root>"
    more = f" ({len(errors) - 1} more problem(s) after this one)" if len(errors) > 1 else ""
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1], raw)
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
        return ConfigError(f"unknown key{more}", file=source, key=dotted, fix=hint)
    if kind == "missing":
        return ConfigError(f"required key is missing{more}", file=source, key=dotted,
                           fix="add it (see `tuneforge config init` for a starter file)")
    if kind == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        expected = first.get("ctx", {}).get("expected_tags", "")
        names = [n.strip(" '") for n in str(expected).split(",")]
        close = difflib.get_close_matches(str(tag), names, n=1, cutoff=0.7)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of: {expected}"
        return ConfigError(f"unknown {dotted.split('.')[0]} {tag!r}{more}", file=source, key=f"{dotted}.name",
                           fix=hint)
    if kind == "union_tag_not_found":
        return ConfigError(f"needs a 'name'{more}", file=source, key=dotted, fix=f"e.g. {dotted}: {{name: ...}}")
    if kind == "config_key":  # a check across sections, raised with the key it is about
        ctx = first.get("ctx", {})
        return ConfigError(f"{ctx['message']}{more}", file=source, key=ctx["key"], fix=ctx["fix"])
    got = first.get("input")
    got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return ConfigError(f"{first['msg']}{got_text}{more}", file=source, key=dotted,
                       fix="see `tuneforge config schema` for the allowed values")
