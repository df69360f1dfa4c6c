"""`tuneforge config`: print the JSON Schema, write a commented starter file, validate a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.errors import ConfigError

app = typer.Typer(help="Run configuration files.", no_args_is_help=True)
console = Console()

STARTERS = {
    "classification": """\
# tuneforge run config: text classification. Every key is optional unless marked required.
# Validate with `tuneforge config validate FILE`; all keys: `tuneforge config schema`.
name: my-classifier            # run folder name, under output_dir
output_dir: runs               # workspace: run folders + MLflow store (SQLite)
model:
  path: default                # local HF folder, or 'default' (bundled all-MiniLM-L6-v2)
data:
  train: data/train.jsonl      # required: JSONL / CSV / TSV / Parquet / datasets folder
  # validation: data/val.jsonl # own splits; otherwise split from train (80/10/10, stratified)
  # test: data/test.jsonl
  columns: {text: text, label: label}
  max_length: 128
  clean: {dedupe: normalized, drop_conflicts: true, redact_pii: false}
task:
  name: classification
  multi_label: false
method:
  name: lora                   # full | freeze | lora | dora | ia3 | prompt_tuning | adapter
  r: 8
  alpha: 16
training:
  epochs: 3
  batch_size: 32
  # learning_rate: 5e-4        # default depends on the method
  seed: 42
  early_stopping: {metric: auto, patience: 3}
""",
    "token_classification": """\
# tuneforge run config: token classification (NER). Every key is optional unless marked required.
# Validate with `tuneforge config validate FILE`; all keys: `tuneforge config schema`.
name: my-ner
output_dir: runs
model:
  path: default                # local HF folder, or 'default' (bundled all-MiniLM-L6-v2)
data:
  train: data/train.conll      # required: CoNLL (token<TAB>tag) or JSONL with tokens/tags lists
  # validation: data/dev.conll
  # test: data/test.conll
  columns: {tokens: tokens, tags: tags}
  max_length: 128
task:
  name: token_classification   # IOB1 and IOB2 tags are accepted and normalised to IOB2
method:
  name: full                   # full | freeze | lora | dora | ia3 | prompt_tuning | adapter
training:
  epochs: 3
  batch_size: 16
  seed: 42
  early_stopping: {metric: f1, patience: 3}
""",
}


@app.command()
def schema() -> None:
    """Print the JSON Schema of a run config."""
    from tuneforge.config import RunConfig

    print(json.dumps(RunConfig.model_json_schema(), indent=2))


@app.command()
def init(task: Annotated[str, typer.Option("--task", help="classification | token_classification")] =
         "classification",
         out: Annotated[Path, typer.Option("--out", help="Where to write it.")] = Path("tuneforge.yaml"),
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False) -> None:
    """Write a commented starter config."""
    if task not in STARTERS:
        raise ConfigError(f"no starter for task {task!r}", key="--task", fix=f"use one of: {', '.join(STARTERS)}")
    if out.exists() and not force:
        raise ConfigError("file exists", file=out, fix="choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(STARTERS[task])
    console.print(f"wrote {out}")


@app.command()
def validate(config: Path) -> None:
    """Check a config file; prints the resolved config."""
    from tuneforge.config import dump_config, load_config

    console.print(dump_config(load_config(config)), highlight=False)
    console.print(f"[green]{config} is valid[/green]")
