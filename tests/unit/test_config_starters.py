"""`tuneforge config init --task T` writes a commented starter for every registered task, and each one validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneforge.tasks import TASKS


@pytest.mark.parametrize("task", TASKS.names())
def test_every_task_has_a_starter_that_validates(task: str, cli, tmp_path: Path) -> None:
    out = tmp_path / f"{task}.yaml"
    res = cli("config", "init", "--task", task, "--out", out)
    assert res.code == 0, res.err
    assert out.read_text().startswith("# tuneforge run config")
    assert yaml.safe_load(out.read_text())["task"]["name"] == task
    res = cli("config", "validate", out)
    assert res.code == 0 and "is valid" in " ".join(res.out.split()), res.err  # rich may wrap the line
