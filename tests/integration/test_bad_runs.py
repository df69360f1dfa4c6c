"""Bad inputs around run folders: existing runs, resumes, damaged checkpoints, predict on non-runs. Each exits 2,
names the folder or file, and shows no traceback (helpers in conftest.py)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import assert_user_error, make_config, make_intent_rows, write_jsonl, write_yaml


def lines(*parts: str) -> bytes:
    return "".join(p + "\n" for p in parts).encode("utf-8")


# ---- run folders, resume and checkpoints (one tiny real run shared by the module) --------------------------

@pytest.fixture(scope="module")
def finished_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-step run (checkpoints at steps 1 and 2); returns its run folder. Tests must not modify it."""
    from rich.console import Console

    from tuneforge.api import train

    work = tmp_path_factory.mktemp("finished")
    data = write_jsonl(work / "intents.jsonl", make_intent_rows())
    cfg = make_config(work, tiny_bert, data, name="finished.yaml")
    raw = yaml.safe_load(cfg.read_text())
    raw["training"].update({"eval_steps": 1, "save_total_limit": 2})
    write_yaml(cfg, raw)
    result = train(cfg, console=Console(file=io.StringIO()), quiet=True)
    assert (result.run_dir / "metrics.json").is_file()
    return result.run_dir


def _unfinished_copy(finished: Path, where: Path, name: str = "broken") -> Path:
    """A run folder that looks interrupted: the finished run's config (renamed), its newest checkpoint, no
    metrics.json."""
    raw = yaml.safe_load((finished / "config.yaml").read_text())
    raw.update({"name": name, "output_dir": str(where)})
    run_dir = where / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    found = sorted((finished / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert found, f"the finished run kept no checkpoints: {os.listdir(finished)}"
    shutil.copytree(found[-1], run_dir / "checkpoints" / found[-1].name)
    return run_dir


def test_run_folder_already_exists(cli, finished_run: Path) -> None:
    res = cli("train", finished_run.parent.parent / "finished.yaml", "--quiet")
    assert_user_error(res, str(finished_run), "already exists", fix="add --resume")


def test_resume_a_finished_run(cli, finished_run: Path) -> None:
    res = cli("train", finished_run / "config.yaml", "--resume", "--quiet")
    assert_user_error(res, str(finished_run), "already finished", fix="set another `name`")


def test_resume_with_nothing_to_resume(cli, tiny_bert: Path, intent_file: Path, tmp_path: Path) -> None:
    res = cli("train", make_config(tmp_path, tiny_bert, intent_file), "--resume", "--quiet")
    assert_user_error(res, "nothing to resume", str(tmp_path / "runs" / "t"), fix="run without --resume")


def test_resume_from_truncated_checkpoint(cli, finished_run: Path, tmp_path: Path) -> None:
    run_dir = _unfinished_copy(finished_run, tmp_path / "ws")
    (ckpt,) = (run_dir / "checkpoints").iterdir()
    weights = ckpt / "model.safetensors"
    assert weights.is_file(), f"expected full-model weights in {ckpt}: {os.listdir(ckpt)}"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    res = cli("train", run_dir / "config.yaml", "--resume", "--quiet")
    assert_user_error(res, f"{ckpt.name}/model.safetensors", fix=f"delete {ckpt}")
    assert "truncated" in res.err or "damaged" in res.err, res.err


def test_resume_from_checkpoint_missing_optimizer(cli, finished_run: Path, tmp_path: Path) -> None:
    run_dir = _unfinished_copy(finished_run, tmp_path / "ws")
    (ckpt,) = (run_dir / "checkpoints").iterdir()
    (ckpt / "optimizer.pt").unlink()
    res = cli("train", run_dir / "config.yaml", "--resume", "--quiet")
    assert_user_error(res, ckpt.name, "is incomplete: optimizer.pt is missing", fix=f"delete {ckpt}")


def test_resume_with_a_changed_config(cli, finished_run: Path, tmp_path: Path) -> None:
    run_dir = _unfinished_copy(finished_run, tmp_path / "ws")
    res = cli("train", run_dir / "config.yaml", "--resume", "--set", "training.seed=7", "--quiet")
    assert_user_error(res, "key 'training.seed'", "differs from the run being resumed",
                      fix="resume with the same config")


def test_predict_on_a_folder_that_is_not_a_run(cli, tmp_path: Path) -> None:
    folder = tmp_path / "just-a-folder"
    folder.mkdir()
    assert_user_error(cli("predict", folder, "refund my lamp"), "just-a-folder", "is not a run folder",
                      fix="tuneforge runs list")


def test_predict_on_an_unfinished_run(cli, finished_run: Path, tmp_path: Path) -> None:
    run_dir = _unfinished_copy(finished_run, tmp_path / "ws")
    assert_user_error(cli("predict", run_dir, "refund my lamp"), str(run_dir), "has not finished",
                      fix="--resume")


def test_predict_file_with_missing_text(cli, finished_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_bytes(lines('{"text": "refund my lamp"}', '{"id": 2}'))
    res = cli("predict", finished_run, "--file", inputs)
    assert_user_error(res, "inputs.jsonl:2", "missing or empty 'text'", fix="give every record a 'text'")
