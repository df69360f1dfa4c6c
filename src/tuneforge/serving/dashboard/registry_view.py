"""The registry page's data: MLflow registered models, their versions and aliases, read from the workspace's
tracking store (the one `registry/tracking.py` writes to) and from any other store a run recorded in run.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tuneforge.registry.tracking import tracking_uri
from tuneforge.serving.dashboard.run_views import _read


def _stores(workspace: Path) -> dict[str, dict[str, str]]:
    """Tracking URI -> {MLflow run id: run folder name}, for every store the workspace's runs logged to."""
    stores: dict[str, dict[str, str]] = {}
    default = tracking_uri(None, workspace)
    if (workspace / "mlflow.db").is_file() or not default.startswith("sqlite"):
        stores[default] = {}
    for folder in workspace.iterdir() if workspace.is_dir() else []:
        facts = (_read(folder / "run.json") or {}).get("tracking") or {}
        if facts.get("tracking_uri") and facts.get("run_id"):
            stores.setdefault(facts["tracking_uri"], {})[facts["run_id"]] = folder.name
    return stores


_CLIENTS: dict[str, Any] = {}  # one client per store: opening a SQLite store checks its schema (seconds)


def _client(uri: str) -> Any:
    if uri not in _CLIENTS:
        from mlflow.tracking import MlflowClient

        _CLIENTS[uri] = MlflowClient(uri, registry_uri=uri)
    return _CLIENTS[uri]


def _stamp(ms: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000)) if ms else "-"


def registry(workspace: Path) -> list[dict[str, Any]]:
    """One entry per registered model: its aliases and versions (newest first), each version linked to the run
    folder it came from when that folder is in this workspace. A store that cannot be read is reported, not fatal."""
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    out: list[dict[str, Any]] = []
    for uri, runs in _stores(workspace).items():
        try:
            client = _client(uri)
            versions: dict[str, list[dict[str, Any]]] = {}
            for mv in client.search_model_versions(max_results=1000):
                versions.setdefault(mv.name, []).append({
                    "version": int(mv.version), "run": runs.get(mv.run_id or ""), "run_id": mv.run_id,
                    "status": mv.status, "created": _stamp(mv.creation_timestamp),
                    "aliases": list(mv.aliases or []), "tags": dict(mv.tags or {})})
            for model in client.search_registered_models(max_results=1000):
                aliases = {str(alias): int(version) for alias, version in (model.aliases or {}).items()}
                listed = sorted(versions.get(model.name, []), key=lambda v: -v["version"])
                for version in listed:  # a version's own alias list is not filled in by a search
                    version["aliases"] = sorted({*version["aliases"],
                                                 *(a for a, v in aliases.items() if v == version["version"])})
                out.append({"store": uri, "name": model.name, "description": model.description or "",
                            "aliases": aliases, "versions": listed})
        except Exception as exc:  # a remote store down or an old schema: say which, show the rest
            out.append({"store": uri, "error": f"{type(exc).__name__}: {exc}"})
    return out
