"""MLflow logging and model registration. Embedded SQLite store in the workspace unless a URI is given."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any


def tracking_uri(configured: str | None, workspace: Path) -> str:
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(workspace / 'mlflow.db').resolve()}"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def log_run(cfg: Any, run_dir: Path, test_metrics: dict[str, float], baselines: dict[str, dict[str, float]],
            history: list[dict[str, Any]]) -> dict[str, Any]:
    """Log params, metric history, test metrics and the run folder; register the model. Returns MLflow ids.
    MLflow's set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment; the user's value (or its
    absence) is put back afterwards, so the next run in this process resolves its own workspace store."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        return _log_run(cfg, run_dir, test_metrics, baselines, history)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def _log_run(cfg: Any, run_dir: Path, test_metrics: dict[str, float], baselines: dict[str, dict[str, float]],
             history: list[dict[str, Any]]) -> dict[str, Any]:
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow
    from mlflow.tracking import MlflowClient

    workspace = Path(cfg.output_dir)
    uri = tracking_uri(cfg.tracking.tracking_uri, workspace)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)  # explicit: a registry URI set globally elsewhere must not win
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        artifacts = (workspace / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite") else None
        experiment_id = client.create_experiment(cfg.tracking.experiment, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=cfg.name) as run:
        params = {k: str(v)[:500] for k, v in _flatten(cfg.model_dump(mode="json")).items()}
        mlflow.log_params(params)
        for row in history:
            step = int(row.get("step", 0))
            mlflow.log_metrics({k: float(v) for k, v in row.items()
                                if k not in ("step", "epoch") and isinstance(v, int | float)}, step=step)
        mlflow.log_metrics({f"test_{k}": float(v) for k, v in test_metrics.items()})
        for name, metrics in baselines.items():
            mlflow.log_metrics({f"baseline_{name}_{k}": float(v) for k, v in metrics.items()})
        for item in sorted(run_dir.iterdir()):
            if item.name in ("checkpoints", "data") or item.name.startswith("."):
                continue
            if item.is_dir():
                mlflow.log_artifacts(str(item), artifact_path=item.name)
            else:
                mlflow.log_artifact(str(item))
        # The data report (counts, fingerprints) goes to the tracking store; the raw examples stay in the run folder.
        mlflow.log_artifact(str(run_dir / "data" / "report.json"), artifact_path="data")
        run_id = run.info.run_id
        model_uri = f"{run.info.artifact_uri}/model"
    result: dict[str, Any] = {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run_id}
    if cfg.tracking.register_model:
        name = cfg.tracking.registered_name or cfg.name
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, description=f"tuneforge {cfg.task.name} models")
        version = client.create_model_version(name, source=model_uri, run_id=run_id,
                                              tags={"method": cfg.method.name, "task": cfg.task.name,
                                                    # monitoring/registry_aliases.py: version -> its run folder
                                                    "tuneforge.run_dir": str(run_dir.resolve())})
        result["registered_model"] = {"name": name, "version": version.version}
    return result
