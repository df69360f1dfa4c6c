"""Shared work on a real PostgreSQL server (started by the test session, see tests/postgres_server.py): two sweep
worker processes, standing in for two machines, share one study on it and lose no trial, duplicate none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_sweep import sweep_config

from conftest import write_yaml


def test_two_workers_share_one_study_on_postgres(postgres_server: Any, tiny_bert: Path, tmp_path: Path,
                                                 cli: Any) -> None:
    import optuna
    from optuna.trial import TrialState

    from tuneforge.hpo.storage import with_driver

    url = postgres_server.new_database("sweep_two_workers")
    n = 4
    cfg = sweep_config(tmp_path, tiny_bert, "pg", {"training.learning_rate": {"low": 1e-3, "high": 1e-2,
                                                                              "log": True}}, startup_trials=10)
    cfg["training"]["epochs"] = 1
    res = cli("sweep", write_yaml(tmp_path / "pg.yaml", cfg), "--trials", n, "--workers", 2, "--storage", url)
    assert res.code == 0, res.out + res.err
    trials = optuna.load_study(study_name="pg", storage=with_driver(url)).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(n))  # exactly N: none lost, none extra
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes claimed from the one queue
    assert len({t.user_attrs["run_dir"] for t in trials}) == n  # no trial claimed twice
    for t in trials:
        assert json.loads((Path(t.user_attrs["run_dir"]) / "run.json").read_text())["status"] == "finished"
