"""A RunConfig ready to run: loaded (with `--set` overrides), local paths made absolute, and, when it continues a
finished run (`model.from_run`), the base model and labels that run implies. Apart from `config` because the last
step reads run folders, which `config` (the package's base module) must not import."""

from __future__ import annotations

from pathlib import Path

from tuneforge.config import RunConfig, load_config, with_absolute_paths


def resolve_config(config: RunConfig | str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A RunConfig from an object or a YAML file (with `--set` overrides), every local path made absolute."""
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    cfg = with_absolute_paths(cfg)
    if cfg.model.from_run:  # the parent run decides the base model and the labels (its head)
        from tuneforge.config_parent import with_parent_run

        cfg = with_parent_run(cfg)
    return cfg
