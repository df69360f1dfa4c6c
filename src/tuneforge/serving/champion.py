"""The server follows the MLflow `champion` alias: a request for a registered model's name answers with the run its
champion points to, re-checked at most every `interval_s` seconds, without a restart.

Only names with a champion alias are served this way (a promotion is an explicit act: `tuneforge promote`); such a
name shadows a run folder of the same name. The champion's run folder is loaded into the pool like any other run (by
its folder name), and the pool maps the registered name onto it (`ModelPool.aliases`), so the engine, the batcher
and the adapter LRU see ordinary runs. A workspace without an MLflow store is never touched (nothing is created).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("tuneforge.serve")


class ChampionFollower:
    def __init__(self, workspace: Path, interval_s: float = 2.0) -> None:
        self.workspace, self.interval_s = Path(workspace), interval_s
        self._last = -float("inf")
        self._registry: Any = None

    def _open(self) -> Any:
        if self._registry is None:
            if not (self.workspace / "mlflow.db").is_file() and not os.environ.get("MLFLOW_TRACKING_URI"):
                return None
            from tuneforge.monitoring.registry_aliases import Registry

            self._registry = Registry(self.workspace)
        return self._registry

    def refresh(self, pool: Any) -> None:
        """Re-read the champion aliases (rate-limited) and point the pool's names at their runs."""
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        try:
            registry = self._open()
            if registry is None:
                return
            pool.aliases = self._champions(registry, pool)  # one assignment: readers see the old or the new map
        except Exception as exc:  # a locked or unreachable store keeps the last known champions
            log.warning("champion aliases not refreshed: %s", exc)

    def _champions(self, registry: Any, pool: Any) -> dict[str, str]:
        from tuneforge.monitoring.registry_aliases import CHAMPION

        found: dict[str, str] = {}
        for model in registry.client.search_registered_models():
            version = (model.aliases or {}).get(CHAMPION)
            if version is None:
                continue
            run_dir = registry.run_dir(model.name, int(version))
            target = pool.ensure(run_dir) if run_dir is not None else None
            if target is None:
                log.warning("not serving %s: champion version %s has no finished run folder (%s)", model.name,
                            version, run_dir)
                continue
            found[model.name] = target
        return found
