"""Nothing leaves the machine, proven: train and compare run in child processes where every outbound connection
except loopback is refused (tests/offline/sitecustomize.py patches the socket layer), and every attempt is logged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import base_config, make_intent_rows, write_jsonl, write_yaml

OFFLINE = Path(__file__).resolve().parents[1] / "offline"


def _run_offline(args: list[str], log: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(OFFLINE), os.environ.get("PYTHONPATH", "")]),
           "TUNEFORGE_NET_LOG": str(log)}
    code = "import sys; from tuneforge.cli.main import main; sys.argv = ['tuneforge', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_socket_guard_refuses_and_logs_outbound(tmp_path: Path) -> None:
    log = tmp_path / "net.log"
    probe = ("import socket\ntry:\n    socket.create_connection(('203.0.113.7', 443), timeout=2)\n"
             "except OSError as e:\n    print('refused', type(e).__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(OFFLINE), "TUNEFORGE_NET_LOG": str(log)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert "refused" in out.stdout and "203.0.113.7" in log.read_text()


def test_train_and_compare_work_with_the_network_refused(tmp_path: Path, tiny_bert: Path) -> None:
    log = tmp_path / "net.log"
    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(15))
    cfg = base_config(tiny_bert, data, tmp_path / "runs", tracking={"mlflow": True},
                      compare={"runs": [str(tmp_path / "runs" / "t")], "bootstrap_samples": 200,
                               "permutations": 200, "latency_examples": 5})
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 3}
    config = write_yaml(tmp_path / "run.yaml", cfg)
    trained = _run_offline(["train", str(config)], log, tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    compared = _run_offline(["compare", str(config)], log, tmp_path)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (tmp_path / "runs" / "t-compare" / "comparison.json").is_file()
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"outbound connections were attempted:\n{attempts}"
