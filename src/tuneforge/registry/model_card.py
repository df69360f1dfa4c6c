"""A Hugging Face style model card (README.md with YAML front matter) holding the run's results."""

from __future__ import annotations

from typing import Any

import yaml


def _gguf_lineage(cfg: Any) -> dict[str, Any]:
    """The GGUF file (path + sha256) the base model was converted from, so the run names its exact input."""
    from tuneforge.models.gguf import gguf_lineage

    lineage = gguf_lineage(cfg.model.path, cfg.output_dir)
    return {"base_model_gguf": lineage} if lineage else {}


def model_card(cfg: Any, task: Any, library_name: str, metrics: dict[str, float], comparison: list[dict[str, Any]],
               data_report: dict[str, Any], trainable: int, total: int) -> str:
    task_name = task.name
    hf_task = task.pipeline_tag or task_name
    front = {
        "library_name": library_name,
        "base_model": cfg.model.path,
        "pipeline_tag": hf_task,
        "tags": ["tuneforge", cfg.method.name, task_name],
        **_gguf_lineage(cfg),
        "model-index": [{"name": cfg.name, "results": [{
            "task": {"type": hf_task},
            "metrics": [{"type": k, "value": round(v, 4)} for k, v in metrics.items() if isinstance(v, float)]}]}],
    }
    rows = "\n".join(f"| {r['model']} | {r['score']:.4f} | {r.get('delta', '')} |" for r in comparison)
    rows_count = data_report.get("rows", {})
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {cfg.name}

Fine-tuned with [tuneforge](https://example.invalid/tuneforge) from `{cfg.model.path}` for **{task_name}**
using the **{cfg.method.name}** method ({trainable:,} of {total:,} parameters trained, {100 * trainable / total:.2f}%).

## Results (test split, {rows_count.get('test', '?')} examples)

| model | score | vs best baseline |
|---|---|---|
{rows}

## Training data

{rows_count.get('train', '?')} training / {rows_count.get('validation', '?')} validation /
{rows_count.get('test', '?')} test examples after cleaning; {len(data_report.get('labels', []))} labels.
Exact examples are fingerprinted (sha256) in `data/report.json`.

## How to use

```bash
tuneforge predict <this run folder> "your text"
```

```python
import tuneforge
run = tuneforge.load_run("<this run folder>")
print(run.predict(["your text"]))
```

## Reproduce

`config.yaml` in the run folder is the resolved configuration; `environment.json` lists package versions and the
tuneforge commit. `tuneforge train config.yaml` re-runs it.
"""
