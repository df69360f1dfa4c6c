"""The export as an MLflow model version (the run's registered model, tagged with the export kind)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


def register_export(tracking: dict[str, Any], out: Path, info: dict[str, Any], cfg: Any) -> dict[str, Any]:
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking["tracking_uri"], registry_uri=tracking["tracking_uri"])
    run_id = tracking["run_id"]
    name = (tracking.get("registered_model") or {}).get("name") or cfg.tracking.registered_name or cfg.name
    label = info["kind"] + (f"-{info['quantize']}" if info.get("quantize") else "")
    client.log_artifacts(run_id, str(out), artifact_path=f"exports/{label}")
    source = f"{client.get_run(run_id).info.artifact_uri}/exports/{label}"
    try:
        client.get_registered_model(name)
    except Exception:  # MLflow raises its own type for a missing model
        client.create_registered_model(name)
    tags = {"export": info["kind"], "quantize": str(info.get("quantize") or "none"),
            "task": info["run"]["task"]["name"], "method": info["run"]["method"]["name"]}
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return {"tracking_uri": tracking["tracking_uri"], "run_id": run_id, "registered_model": name,
            "version": version.version}
