"""Champion / challenger: MLflow registry aliases (never the deprecated stages) over a workspace's registered models,
with their history kept in the registry itself.

- `champion`: the version served under the registered model's name (the server follows it, serving/champion.py).
- `challenger`: the latest candidate (a retrain sets it; a rollback puts the demoted champion there).
- Every move is recorded as a registered-model tag `tuneforge.alias_event.<time_ns>` holding JSON
  {alias, from, to, action, by, at, reason, forced}: the history lives with the model (a remote MLflow server
  keeps it too), and `history()` reads it back in order. A version carries `tuneforge.gate` (passed/failed) and
  `tuneforge.run_dir` (its run folder) as model-version tags.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

CHAMPION, CHALLENGER = "champion", "challenger"
EVENT_PREFIX = "tuneforge.alias_event."
RUN_DIR_TAG = "tuneforge.run_dir"
GATE_TAG, GATE_REASONS_TAG = "tuneforge.gate", "tuneforge.gate_reasons"


class RegistryError(TuneforgeError):
    """A registered model, version or alias move the user asked for does not exist or is refused."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    run_dir: Path | None
    run_id: str | None
    aliases: tuple[str, ...]
    gate: str | None  # "passed" | "failed" | None (no gate: e.g. the first model)


@dataclass(frozen=True)
class AliasEvent:
    alias: str
    from_version: int | None
    to_version: int | None
    action: str  # promote | rollback | challenger
    by: str
    at: str  # ISO 8601, UTC
    reason: str = ""
    forced: bool = False


class Registry:
    """An MLflow client on a workspace's store (its mlflow.db, or MLFLOW_TRACKING_URI / the given URI)."""

    def __init__(self, workspace: str | Path = "runs", tracking_uri: str | None = None) -> None:
        from tuneforge.registry.tracking import tracking_uri as resolve_uri

        self.workspace = Path(workspace).expanduser().resolve()
        self.uri = resolve_uri(tracking_uri, self.workspace)
        if self.uri.startswith("sqlite:///") and not Path(self.uri.removeprefix("sqlite:///")).is_file():
            raise RegistryError(f"no MLflow store in {self.workspace} (mlflow.db missing)",
                                fix="give the workspace your runs were trained in (--workspace DIR), with "
                                    "tracking.mlflow and tracking.register_model on")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        logging.getLogger("alembic").setLevel(logging.ERROR)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.uri, registry_uri=self.uri)
        self._run_dirs: dict[tuple[str, int], Path | None] = {}  # versions never change their source

    # ---- reading ------------------------------------------------------------------------------------------
    def model(self, name: str) -> Any:
        try:
            return self.client.get_registered_model(name)
        except Exception:  # MLflow raises its own RestException for a missing name
            known = ", ".join(m.name for m in self.client.search_registered_models()) or "none"
            raise RegistryError(f"no registered model {name!r} in {self.uri}",
                                fix=f"use one of: {known} (a run registers as tracking.registered_name or its "
                                    "name)") from None

    def version(self, name: str, version: int) -> VersionInfo:
        self.model(name)
        try:
            mv = self.client.get_model_version(name, str(version))
        except Exception:
            raise RegistryError(f"{name} has no version {version}",
                                fix=f"see `tuneforge promote --history {name}` or `tuneforge runs list`") from None
        return self._info(name, mv)

    def versions(self, name: str) -> list[VersionInfo]:
        self.model(name)
        found = self.client.search_model_versions(f"name='{name}'")
        return sorted((self._info(name, mv) for mv in found), key=lambda v: v.version)

    def alias(self, name: str, alias: str) -> VersionInfo | None:
        aliases = self.model(name).aliases
        return self.version(name, int(aliases[alias])) if alias in aliases else None

    def deployed(self, name: str) -> VersionInfo:
        """The champion, else the latest version (what retrain continues from and the server answers with)."""
        champion = self.alias(name, CHAMPION)
        if champion is not None:
            return champion
        versions = self.versions(name)
        if not versions:
            raise RegistryError(f"{name} has no versions", fix="train a run with tracking.register_model on")
        return versions[-1]

    def run_dir(self, name: str, version: int) -> Path | None:
        key = (name, version)
        if key not in self._run_dirs:
            self._run_dirs[key] = self.version(name, version).run_dir
        return self._run_dirs[key]

    def history(self, name: str) -> list[AliasEvent]:
        tags = self.model(name).tags or {}
        events = [json.loads(v) for k, v in sorted(tags.items(), key=lambda kv: _event_order(kv[0]))
                  if k.startswith(EVENT_PREFIX)]
        return [AliasEvent(**e) for e in events]

    def _info(self, name: str, mv: Any) -> VersionInfo:
        tags = mv.tags or {}
        run_dir = Path(tags[RUN_DIR_TAG]) if tags.get(RUN_DIR_TAG) else self._find_run_dir(mv.run_id)
        aliases = tuple(getattr(mv, "aliases", None) or ())
        return VersionInfo(name, int(mv.version), run_dir, mv.run_id, aliases, tags.get(GATE_TAG))

    def _find_run_dir(self, run_id: str | None) -> Path | None:
        """Versions registered before run folders were tagged: the workspace folder whose run.json names the run."""
        if not run_id or not self.workspace.is_dir():
            return None
        for status in self.workspace.glob("*/run.json"):
            try:
                if (json.loads(status.read_text()).get("tracking") or {}).get("run_id") == run_id:
                    return status.parent
            except (OSError, ValueError):
                continue
        return None

    # ---- writing ------------------------------------------------------------------------------------------
    def move(self, name: str, alias: str, to: int | None, action: str, *, by: str | None = None,
             reason: str = "", forced: bool = False) -> AliasEvent:
        """Point `alias` at version `to` (None: remove it) and record the move."""
        current = self.alias(name, alias)
        if to is None:
            if current is not None:
                self.client.delete_registered_model_alias(name, alias)
        else:
            self.client.set_registered_model_alias(name, alias, str(to))
        event = AliasEvent(alias, current.version if current else None, to, action, by or _who(),
                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), reason, forced)
        self.client.set_registered_model_tag(name, f"{EVENT_PREFIX}{time.time_ns()}", json.dumps(asdict(event)))
        return event

    def tag_gate(self, name: str, version: int, passed: bool, reasons: list[str]) -> None:
        self.client.set_model_version_tag(name, str(version), GATE_TAG, "passed" if passed else "failed")
        self.client.set_model_version_tag(name, str(version), GATE_REASONS_TAG, "; ".join(reasons)[:4900])


def _event_order(key: str) -> int:
    tail = key.removeprefix(EVENT_PREFIX)
    return int(tail) if tail.isdigit() else 0


def _who() -> str:
    try:
        return os.environ.get("TUNEFORGE_USER") or getpass.getuser()
    except (KeyError, OSError):  # no user database entry (containers)
        return "unknown"


# ---- the Python API the CLI and the monitor's bench call -------------------------------------------------
def version_of_run(reg: Registry, run: str | Path) -> tuple[str, int]:
    """(registered name, version) a finished run folder was registered as (its run.json)."""
    status = Path(run) / "run.json"
    tracking = (json.loads(status.read_text()).get("tracking") or {}) if status.is_file() else {}
    registered = tracking.get("registered_model")
    if not registered:
        raise RegistryError(f"{run} was not registered as a model version (run.json has no registered_model)",
                            fix="train it with tracking.mlflow and tracking.register_model on")
    return str(registered["name"]), int(registered["version"])


def _gate_of(info: VersionInfo) -> tuple[str | None, list[str]]:
    """The version's gate result: its tag, else the run folder's gate.json (None: it never went through a gate)."""
    if info.run_dir is not None and (info.run_dir / "gate.json").is_file():
        gate = json.loads((info.run_dir / "gate.json").read_text())
        return ("passed" if gate.get("passed") else "failed"), list(gate.get("reasons", []))
    return info.gate, []


def promote(model: str, version: int | None = None, *, run: str | Path | None = None, workspace: str | Path = "runs",
            force: bool = False, by: str | None = None, reason: str = "",
            tracking_uri: str | None = None) -> list[AliasEvent]:
    """Make a version the champion (by number, or the version a run folder registered as). A version that failed
    its gate is refused unless `force`; the old champion is kept in the history (rollback returns to it)."""
    reg = Registry(workspace, tracking_uri)
    if (version is None) == (run is None):
        raise RegistryError("give either a version or a run", fix=f"tuneforge promote {model} --version N")
    if run is not None:
        registered, version = version_of_run(reg, run)
        if registered != model:
            raise RegistryError(f"{run} is version {version} of {registered!r}, not of {model!r}",
                                fix=f"tuneforge promote {registered} --run {run}")
    assert version is not None
    info = reg.version(model, version)
    gate, why = _gate_of(info)
    if gate == "failed" and not force:
        raise RegistryError(f"{model} version {version} failed its gate ({'; '.join(why) or 'see gate.json'})",
                            fix="retrain, or pass --force to promote it anyway (recorded in the history)")
    champion = reg.alias(model, CHAMPION)
    if champion is not None and champion.version == version:
        raise RegistryError(f"{model} version {version} is already the champion", fix="nothing to do")
    events = [reg.move(model, CHAMPION, version, "promote", by=by, reason=reason, forced=force and gate == "failed")]
    challenger = reg.alias(model, CHALLENGER)
    if challenger is not None and challenger.version == version:  # the candidate won: no challenger left
        events.append(reg.move(model, CHALLENGER, None, "promote", by=by, reason=f"promoted to {CHAMPION}"))
    return events


def rollback(model: str, *, workspace: str | Path = "runs", by: str | None = None, reason: str = "",
             tracking_uri: str | None = None) -> list[AliasEvent]:
    """The champion goes back to the version it held before its latest promotion; the demoted version becomes the
    challenger. Rolling back twice walks further back (the history is a stack of promotions)."""
    reg = Registry(workspace, tracking_uri)
    stack = champion_stack(reg.history(model))
    current = reg.alias(model, CHAMPION)
    if current is None or len(stack) < 2:
        raise RegistryError(f"{model} has no earlier champion to roll back to",
                            fix=f"see `tuneforge promote --history {model}`; promote a version instead")
    target = stack[-2]
    return [reg.move(model, CHAMPION, target, "rollback", by=by, reason=reason),
            reg.move(model, CHALLENGER, current.version, "rollback", by=by, reason="demoted by rollback")]


def champion_stack(events: list[AliasEvent]) -> list[int]:
    """The champion's versions in promotion order, each rollback popping the latest."""
    stack: list[int] = []
    for e in events:
        if e.alias != CHAMPION:
            continue
        if e.action == "rollback":
            if stack:
                stack.pop()
            if e.to_version is not None and (not stack or stack[-1] != e.to_version):
                stack.append(e.to_version)  # the alias was moved by hand in between: follow the registry
        elif e.to_version is not None:
            stack.append(e.to_version)
    return stack


def set_challenger(model: str, version: int, *, workspace: str | Path = "runs", by: str | None = None,
                   reason: str = "", tracking_uri: str | None = None) -> AliasEvent:
    return Registry(workspace, tracking_uri).move(model, CHALLENGER, version, "challenger", by=by, reason=reason)


def current_champion(model: str, *, workspace: str | Path = "runs", tracking_uri: str | None = None
                     ) -> VersionInfo | None:
    """The version the `champion` alias points to (None: no champion yet)."""
    return Registry(workspace, tracking_uri).alias(model, CHAMPION)


def history(model: str, *, workspace: str | Path = "runs", tracking_uri: str | None = None) -> list[AliasEvent]:
    return Registry(workspace, tracking_uri).history(model)
