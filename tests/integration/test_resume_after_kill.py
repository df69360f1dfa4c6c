"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint and ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl, write_yaml


def _cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuneforge.cli.main", "train", str(config), "--quiet", *extra]


def test_sigkill_then_resume_matches_uninterrupted(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", make_intent_rows(40))
    # 96 training rows, batch 4: 24 steps per epoch; checkpoints every 5 steps, so step 5 is mid-epoch 1.
    train = {"epochs": 3, "batch_size": 4, "eval_steps": 5, "learning_rate": 5e-4, "save_total_limit": 3}
    runs = tmp_path / "runs"
    killed_cfg = write_yaml(tmp_path / "killed.yaml", base_config(tiny_bert, data, runs, name="killed",
                                                                  training=train))
    straight_cfg = write_yaml(tmp_path / "straight.yaml", base_config(tiny_bert, data, runs, name="straight",
                                                                      training=train))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cmd(killed_cfg), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = runs / "killed" / "checkpoints" / "checkpoint-5"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (runs / "killed" / "metrics.json").exists()

    resumed = subprocess.run(_cmd(killed_cfg, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    straight = subprocess.run(_cmd(straight_cfg), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    a = json.loads((runs / "killed" / "metrics.json").read_text())
    b = json.loads((runs / "straight" / "metrics.json").read_text())
    assert a["train"]["resumed_from"] and a["train"]["resumed_from"].split("-")[-1] != "0"
    assert a["test"] == b["test"]  # identical test metrics, not merely close
    losses_a = [h["eval_loss"] for h in json.loads((runs / "killed" / "history.json").read_text()) if "eval_loss" in h]
    losses_b = [h["eval_loss"] for h in json.loads((runs / "straight" / "history.json").read_text())
                if "eval_loss" in h]
    assert losses_a[-3:] == losses_b[-3:]


def test_sigterm_saves_a_checkpoint_and_exits_130(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", make_intent_rows(40))
    cfg = write_yaml(tmp_path / "c.yaml", base_config(tiny_bert, data, tmp_path / "runs", name="term", training={
        "epochs": 20, "batch_size": 4, "eval_steps": 1000}))
    proc = subprocess.Popen(_cmd(cfg), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_json = tmp_path / "runs" / "term" / "run.json"
    deadline = time.time() + 300
    while not run_json.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let it take a few steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    checkpoints = list((tmp_path / "runs" / "term" / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1  # saved at the step where the signal arrived, not at an eval boundary
    assert json.loads(run_json.read_text())["status"] == "interrupted"


def _wait_for_training(run_json: Path, proc: subprocess.Popen, started: float, limit: float = 300) -> bool:
    """True once this process's training has begun (run.json rewritten with status training after `started`)."""
    while proc.poll() is None and time.time() < started + limit:
        try:
            status = json.loads(run_json.read_text())
            if status.get("status") == "training" and status.get("time", 0) >= started:
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_twenty_seeded_sigkills_end_bit_identical(tiny_bert: Path, tmp_path: Path) -> None:
    """kill -9 at 20 seeded random moments (before training, mid-step, inside checkpoint writes), resuming each
    time: the final weights equal an uninterrupted run's bit for bit."""
    import random

    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "d.jsonl", make_intent_rows(40))
    # long enough (480 steps, a checkpoint every 4) that 20 kills land before it ends, even on an idle machine
    train = {"epochs": 20, "batch_size": 4, "eval_steps": 4, "learning_rate": 5e-4, "save_total_limit": 2,
             "threads": 1, "early_stopping": {"patience": None}}
    runs = tmp_path / "runs"
    killed_cfg = write_yaml(tmp_path / "killed.yaml", base_config(tiny_bert, data, runs, name="killed",
                                                                  training=train))
    straight_cfg = write_yaml(tmp_path / "straight.yaml", base_config(tiny_bert, data, runs, name="straight",
                                                                      training=train))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(20)
    saved = runs / "killed" / "config.yaml"  # once it exists, every restart is a --resume
    kills = mid_training = 0
    while kills < 20 and not (runs / "killed" / "metrics.json").exists():
        proc = subprocess.Popen(_cmd(killed_cfg, *(["--resume"] if saved.exists() else [])), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if _wait_for_training(runs / "killed" / "run.json", proc, started=time.time()):
            time.sleep(rng.uniform(0.05, 2.5))  # a random moment of training: mid-step or inside a checkpoint write
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            mid_training += any((runs / "killed" / "checkpoints").glob("checkpoint-*"))
            continue
        assert proc.returncode == 0, (proc.stderr.read() if proc.stderr else "")[-2000:]
    if not (runs / "killed" / "metrics.json").exists():
        done = subprocess.run(_cmd(killed_cfg, *(["--resume"] if saved.exists() else [])), env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    straight = subprocess.run(_cmd(straight_cfg), env=env, capture_output=True, text=True, timeout=900)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a = load_file(str(next((runs / "killed" / "model").glob("*.safetensors"))))
    b = load_file(str(next((runs / "straight" / "model").glob("*.safetensors"))))
    assert mid_training >= 5, f"only {mid_training} of {kills} kills landed after a checkpoint existed"
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
