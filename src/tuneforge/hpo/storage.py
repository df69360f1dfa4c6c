"""The Optuna study shared by sweep workers: storage (SQLite file or a server URL), sampler, pruner, and the trial
queue workers claim from.

Why a queue instead of `study.optimize(n_trials=...)` + `MaxTrialsCallback`: that callback runs after a trial ends,
so with K workers up to K-1 extra trials start while the count is being reached. Here the coordinator enqueues
exactly the missing trials (WAITING) and workers only ever claim a WAITING trial (atomically: the storage's
conditional WAITING -> RUNNING update, under a file lock for SQLite, which has no row locks) and never create one,
so the study ends with exactly the trials requested, none lost, none extra.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from tuneforge.config import SweepConfig
from tuneforge.errors import ConfigError

HEARTBEAT_S = 30  # a worker records a heartbeat this often while its trial runs...
GRACE_S = 300  # ...and a RUNNING trial silent this long is stale (its worker died): failed, then replaced
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BUDGETED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

optuna.logging.set_verbosity(optuna.logging.WARNING)  # tuneforge prints its own one line per trial


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / 'study.db').resolve()}"


def redact(url: str) -> str:
    """The URL with any password hidden (reports and logs never show it)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def with_driver(url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; tuneforge's `postgres` extra installs psycopg 3, so a plain URL
    gets that driver when psycopg2 is absent (an explicit `postgresql+driver://` is left alone)."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str) -> RDBStorage:
    """An RDBStorage with heartbeats (crashed workers' trials are detected) and, for SQLite, a long busy timeout:
    SQLite allows one writer at a time, and K workers writing intermediate values would otherwise see
    'database is locked'."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}  # a server may drop idle connections during long trials
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(with_driver(url), engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                              grace_period=GRACE_S)
    except ImportError as exc:
        raise ConfigError(f"no database driver for {redact(url)} ({exc.__cause__ or exc})", key="sweep.storage",
                          fix="for PostgreSQL: pip install 'tuneforge[postgres]' (psycopg 3)") from None
    except Exception as exc:  # sqlalchemy: malformed URL, server unreachable, wrong password
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot open the study storage {redact(url)}: {first}", key="sweep.storage",
                          fix="check the URL (sqlite:///path/study.db or postgresql://user:pass@host/db) "
                              "and that the server is reachable") from None


def make_sampler(sweep: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar (on by default): running trials count as pessimistic results, so parallel workers spread out.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sweep.startup_trials)


def make_pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    # Steps are evaluation counts (1, 2, ...): a trial is judged from evaluation pruner_warmup + 1 on.
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.startup_trials, n_warmup_steps=sweep.pruner_warmup + 1)


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:  # a database server: its row lock (SELECT ... FOR UPDATE) makes the claim atomic
        yield
        return
    import fcntl

    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def claim_trial(study: optuna.Study, storage: RDBStorage, url: str) -> optuna.Trial | None:
    """Take the lowest-numbered WAITING trial of the study, or None when the queue is empty."""
    study_id = storage.get_study_id_from_name(study.study_name)
    with _file_lock(sqlite_path(url)):
        # Listed through the study (not the raw storage) so its trial cache knows the trial we are about to run.
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    storage.record_heartbeat(trial_id)
                    return optuna.Trial(study, trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    return None


def setup_broken(c: dict[str, int], budget: int) -> bool:
    """The first trials all failed: a broken setup (data, model, config), not a bad draw; stop instead of looping."""
    return c["complete"] + c["pruned"] == 0 and c["fail"] >= min(3, budget)


def top_up(study: optuna.Study, budget: int, url: str, *, replace_failures: bool = True) -> int:
    """Queue the trials missing from the budget; returns how many were queued.

    Failed trials do not count towards the budget (as with MaxTrialsCallback(states=(COMPLETE, PRUNED))), so a
    worker that finds the queue empty queues their replacements here, unless the setup looks broken or failures
    exceed the budget. Counting and queueing happen under the claim lock, so two SQLite workers cannot both queue
    the same missing trial (on a database server the window is a few milliseconds at the very end of a sweep).
    """
    with _file_lock(sqlite_path(url)):
        c = counts(study)
        if replace_failures and (setup_broken(c, budget) or c["fail"] > budget):
            return 0
        missing = budget - sum(c[s.name.lower()] for s in BUDGETED)
        for _ in range(missing):
            study.enqueue_trial({})
        return max(0, missing)


def trial_id(study: optuna.Study, storage: RDBStorage, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


class Heartbeat:
    """Records a heartbeat for a running trial from a daemon thread, so a coordinator can tell a live trial from
    one whose worker was killed (`optuna.storages.fail_stale_trials`)."""

    def __init__(self, storage: RDBStorage, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)
        self._thread.start()

    def _beat(self, storage: RDBStorage, trial_id: int) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is harmless; the next one catches up
                storage.record_heartbeat(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def worker_tag() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
