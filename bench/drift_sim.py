"""A simulated month of BANKING77 traffic through the real server, monitored by `tuneforge monitor`'s code.

    OMP_NUM_THREADS=1 nice -n 10 python bench/drift_sim.py            # the full bench (month + 10 no-drift months)
    python bench/drift_sim.py --quiet-months 2 --per-day 32           # a quick look

A classifier (full fine-tune of the default MiniLM-L6, one thread) learns 67 of the 77 intents; the other 10 are
held back (they stay in the label set, with no training examples). Traffic goes to a uvicorn server on 127.0.0.1
over HTTP (/v1/classify, 8 texts per request) and half the inputs get their true label back through /v1/feedback.
Each entry's time is then set to its simulated day (the bench owns the log), so a month takes minutes:
week 1 like training (BANKING77 texts of the 67 intents the run never saw), week 2 drifting toward the held-back
intents and new phrasings (share rising 10% -> 40%), week 3 strongly shifted (70%), week 4 the same traffic after
a retrain on curated, labelled requests (`--export-for-labelling` -> `data merge-labels` -> retrain, gate, promote;
needs the gate branch, see --skip-retrain). Ten more months of week-1 traffic, each with its own seed, count false
alarms. Writes bench/results/drift_sim.json, docs/bench/drift_sim.md and docs/bench/drift_sim.png.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, machine, print_table, require_shared, save
from drift_report import alarm_day_numbers, rewrite_doc
from drift_traffic import (  # noqa: F401  (drift_retrain.py reaches them through this module)
    FEEDBACK_SHARE,
    HELD_BACK,
    KNOWN_POOL,
    PER_INTENT,
    day_traffic,
    load_banking,
    month_shifts,
    split_intents,
)

DAY = 86400.0
T0 = 1_790_000_000.0  # simulated start of the month (a fixed date: results do not depend on today)
BATCH = 8


def train_run(out: Path, name: str, rows: list[dict[str, str]], labels: list[str], steps: int) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    run_dir = out / name
    if (run_dir / "metrics.json").is_file():
        return run_dir
    data = out.parent / "data" / f"{name}.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tuneforge.train(parse_config({
        "name": name, "output_dir": str(out), "data": {"train": str(data), "max_length": 64, "labels": labels},
        "task": {"name": "classification"}, "method": {"name": "full"},
        "training": {"epochs": 3, "max_steps": steps, "learning_rate": 2e-4, "batch_size": 32, "seed": 42,
                     "threads": 1, "early_stopping": {"patience": None}},
        "tracking": {"mlflow": False}, "evaluation": {"baselines": []}}), quiet=True)
    return run_dir


class LiveServer:
    """`tuneforge serve`'s app under uvicorn on 127.0.0.1 (a thread of this process), with an inference key."""

    def __init__(self, workspace: Path) -> None:
        import socket
        import threading

        import httpx2
        import uvicorn

        from tuneforge.serving.app import ServeSettings, create_app
        from tuneforge.serving.keys import KeyStore, store_path

        _key, secret = KeyStore(store_path(workspace)).create("drift-sim", "inference")
        settings = ServeSettings(workspace=workspace, rate_limit=10**9, retention_days=None, max_batch=16)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            time.sleep(0.1)
        assert self.server.started, "uvicorn did not start"
        self.client = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=300,
                                    headers={"Authorization": f"Bearer {secret}"})

    def classify(self, model: str, texts: list[str]) -> dict[str, Any]:
        resp = self.client.post("/v1/classify", json={"model": model, "input": texts, "top_k": 5})
        resp.raise_for_status()
        return resp.json()

    def feedback(self, request_id: str, index: int, label: str) -> None:
        resp = self.client.post("/v1/feedback", json={"id": request_id, "index": index, "label": label})
        resp.raise_for_status()

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def send_day(server: LiveServer, model: str, rows: list[dict[str, str]], when: float, log_file: Path,
             rng: random.Random, feedback_share: float) -> dict[str, Any]:
    """One simulated day through the server; then the day's log entries get their simulated times."""
    ids, correct, labelled = [], 0, 0
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        answer = server.classify(model, [r["text"] for r in chunk])
        ids.append(answer["id"])
        for i, (row, item) in enumerate(zip(chunk, answer["data"], strict=True)):
            correct += item["label"] == row["label"]
            labelled += 1
            if rng.random() < feedback_share:
                server.feedback(answer["id"], i, row["label"])
    db = sqlite3.connect(log_file)
    with db:
        db.executemany("UPDATE requests SET time = ? WHERE response_id = ?",
                       [(when + DAY * (k + 0.5) / (len(ids) + 1), rid) for k, rid in enumerate(ids)])
    db.close()
    return {"accuracy": correct / max(1, labelled), "inputs": len(rows)}


def send_month(server: LiveServer, model: str, pools: dict[str, Any], shifts: list[float], start: float,
               log_file: Path, per_day: int, seed: int, days: range | None = None) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for d in days if days is not None else range(len(shifts)):
        rows = day_traffic(pools, shifts[d], per_day, rng)
        out.append({"day": d + 1, "shift": shifts[d],
                    **send_day(server, model, rows, start + d * DAY, log_file, rng, FEEDBACK_SHARE)})
    return out


_VIEWS: dict[Path, Any] = {}  # one loaded run (and its embedding cache) per run folder for all checks


def monitor_days(run_dir: Path, log_file: Path, first_day: int, days: int, start: float,
                 names: list[str] | None = None) -> dict[str, Any]:
    from tuneforge.monitoring.monitor import MonitorSettings, monitor

    settings = MonitorSettings(since_s=days * DAY, window_s=DAY, now=start + (first_day + days) * DAY)
    checked = monitor(run_dir, log_file, settings, view=_VIEWS.get(run_dir), names=names)
    _VIEWS[run_dir] = checked.view
    return checked.verdict


def week_rows(verdict: dict[str, Any], traffic: list[dict[str, Any]], weeks: list[tuple[str, int, int]]
              ) -> list[dict[str, Any]]:
    """One row per week: drift share, served accuracy, live accuracy, drifted windows, alarms, first alarm day."""
    windows, alarm_days = verdict["windows"], alarm_day_numbers(verdict)
    rows = []
    for name, first, last in weeks:
        days = [t for t in traffic if first <= t["day"] <= last]
        ws = windows[first - 1:last]
        live = [w["live_accuracy"] for w in ws if "live_accuracy" in w]
        hits, total = sum(a["correct"] for a in live), sum(a["labelled"] for a in live)
        fired = [d for d in alarm_days if first <= d <= last]
        rows.append({"period": name, "days": f"{first}-{last}",
                     "drifted traffic": f"{min(t['shift'] for t in days):.0%}-{max(t['shift'] for t in days):.0%}",
                     "served accuracy": sum(t["accuracy"] for t in days) / len(days),
                     "live accuracy (feedback)": hits / total if total else None,
                     "windows drifted": f"{sum(w['status'] == 'drift' for w in ws)}/{len(ws)}",
                     "alarms": len(fired), "first alarm (day)": fired[0] if fired else "-"})
    return rows


def serve_pool(server: LiveServer, model: str, rows: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Every pool text through the server once: its answer (label, score, top 5) as the server gave it."""
    answers = {}
    texts = sorted({r["text"] for r in rows})
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        for text, item in zip(chunk, server.classify(model, chunk)["data"], strict=True):
            answers[text] = {"label": item["label"], "score": item["score"],
                             "top": {t["label"]: t["score"] for t in item["top"]}}
    return answers


def replay_month(answers: dict[str, dict[str, Any]], model: str, pools: dict[str, Any], start: float,
                 log_file: Path, per_day: int, seed: int) -> list[dict[str, Any]]:
    """A no-drift month written to the log with the server's own writer: each request's answers are the ones the
    server gave for those texts (serve_pool), at simulated times, with feedback as /v1/feedback stores it."""
    from tuneforge.serving.protocol import new_id
    from tuneforge.serving.request_log import RequestLog, RequestRecord

    rng, log, out = random.Random(seed), RequestLog(log_file, retention_days=None), []
    for d in range(30):
        rows = day_traffic(pools, 0.0, per_day, rng)
        correct = 0
        for k, first in enumerate(range(0, len(rows), BATCH)):
            chunk, rid = rows[first:first + BATCH], new_id("classify")
            got = [answers[r["text"]] for r in chunk]
            log.write(RequestRecord("/v1/classify", 200, "drift-sim", model, [r["text"] for r in chunk],
                                    [{"label": a["label"], "score": a["score"]} for a in got],
                                    [a["top"] for a in got], time=start + d * DAY + DAY * (k + 0.5) / 8,
                                    response_id=rid))
            for i, (row, a) in enumerate(zip(chunk, got, strict=True)):
                correct += a["label"] == row["label"]
                if rng.random() < FEEDBACK_SHARE:
                    log.write_feedback(rid, i, row["label"], None, "drift-sim")
        out.append({"day": d + 1, "shift": 0.0, "accuracy": correct / len(rows), "inputs": len(rows)})
    log.close()
    return out


def quiet_months(server: LiveServer, model: str, run_dir: Path, pools: dict[str, Any], log_file: Path,
                 months: int, per_day: int) -> list[dict[str, Any]]:
    answers = serve_pool(server, model, pools["known"])
    rows = []
    for k in range(months):
        start = T0 + (60 + 35 * k) * DAY  # after the drift month, each month apart from the others
        traffic = replay_month(answers, model, pools, start, log_file, per_day, seed=100 + k)
        verdict = monitor_days(run_dir, log_file, 0, 30, start)
        min_p = min((t["p_adjusted"] for w in verdict["windows"] for t in w["tests"]), default=1.0)
        rows.append({"month": k + 1, "seed": 100 + k, "served accuracy": sum(t["accuracy"] for t in traffic) / 30,
                     "windows drifted": sum(w["status"] == "drift" for w in verdict["windows"]),
                     "alarms": len(verdict["alarms"]), "smallest Holm p": min_p})
        print(f"no-drift month {k + 1}: {rows[-1]}", flush=True)
    return rows


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--per-day", type=int, default=40, help="Inputs a day (8 per request).")
    parser.add_argument("--quiet-months", type=int, default=10, help="No-drift months for the false-alarm count.")
    parser.add_argument("--steps", type=int, default=150, help="Training steps of the run.")
    parser.add_argument("--skip-retrain", action="store_true", help="Weeks 1-3 and the no-drift months only.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    train, test, labels = load_banking(require_shared("data/banking77"))
    pools = split_intents(train, test, labels, seed=0)
    work = RESULTS / "drift_sim"
    runs = work / "runs"
    run_dir = train_run(runs, "b77-v1", pools["training"], labels, args.steps)
    from tuneforge.serving.request_log import log_path

    log_file = log_path(runs)
    for suffix in ("", "-wal", "-shm"):  # every invocation starts from an empty log
        Path(f"{log_file}{suffix}").unlink(missing_ok=True)
    server = LiveServer(runs)
    try:
        shifts = month_shifts("drift")
        traffic = send_month(server, "b77-v1", pools, shifts, T0, log_file, args.per_day, seed=1, days=range(21))
        verdict = monitor_days(run_dir, log_file, 0, 21, T0)
        weeks = [("week 1: like training", 1, 7), ("week 2: drifting", 8, 14), ("week 3: strongly shifted", 15, 21)]
        rows = week_rows(verdict, traffic, weeks)
        print_table("drift month", rows, list(rows[0]))
        week4 = None
        if not args.skip_retrain:
            from drift_retrain import week4_after_retrain

            week4 = week4_after_retrain(server, run_dir, runs, log_file, pools, labels, shifts, args, T0)
            rows.append(week4["row"])
        quiet = quiet_months(server, "b77-v1", run_dir, pools, log_file, args.quiet_months, args.per_day)
    finally:
        server.close()
    print_table("no-drift months", quiet, list(quiet[0]))
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "minutes": (time.time() - started) / 60,
            "command": "OMP_NUM_THREADS=1 nice -n 10 python bench/drift_sim.py" + (
                " --skip-retrain" if args.skip_retrain else "") + (
                f" --quiet-months {args.quiet_months}" if args.quiet_months != 10 else "") + (
                f" --per-day {args.per_day}" if args.per_day != 40 else ""),
            "train_rows": len(pools["training"]), "steps": args.steps,
            "test_accuracy": metrics.get("accuracy", float("nan")), "per_day": args.per_day,
            "reference_rows": verdict["reference"]["rows"], "held_back": pools["held"]}
    save("drift_sim", rows + quiet, {**meta, "verdict_weeks_1_3": verdict, "traffic": traffic})
    print(f"wrote {rewrite_doc()}")


if __name__ == "__main__":
    main()
