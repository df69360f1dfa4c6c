"""Week 4 of bench/drift_sim.py: curate -> label -> merge -> retrain with replay -> gate -> promote, a planted worse
model refused, then a week of the shifted traffic through the server answering the registered name (`champion`).

    OMP_NUM_THREADS=1 nice -n 10 python bench/drift_retrain.py      # after drift_sim.py (it reads its log)

The labeller is simulated: each exported request gets its true BANKING77 label (the bench knows it). Writes
bench/results/drift_sim_week4.json; drift_sim.py's page picks it up (this script rewrites the page when the
month's results are there).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import drift_sim as sim
from _common import RESULTS, require_shared

MODEL = "b77"
PLANTED = "b77-planted-shuffled"


def truth_of_month(pools: dict[str, Any], per_day: int, days: int) -> dict[str, str]:
    """The drift month's texts and true labels, regenerated with drift_sim's seeds and call order."""
    rng, truth = random.Random(1), {}
    for d in range(days):
        for row in sim.day_traffic(pools, sim.month_shifts("drift")[d], per_day, rng):
            truth[row["text"]] = row["label"]
            rng.random()  # send_day's feedback draw, one per input
    return truth


def register_first(run_dir: Path, runs: Path) -> None:
    """Register the deployed run as version 1 and make it the champion (it was trained without MLflow)."""
    from tuneforge.config import load_config
    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.registry.tracking import log_run

    if (runs / "mlflow.db").is_file():
        return
    cfg = load_config(run_dir / "config.yaml")
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"mlflow": True,
                                                                              "registered_name": MODEL})})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log_run(cfg, run_dir, metrics["test"], metrics.get("baselines", {}), json.loads(
        (run_dir / "history.json").read_text()))
    ra.promote(MODEL, 1, workspace=runs, reason="first model")


def curate(run_dir: Path, log_file: Path, truth: dict[str, str], work: Path, count: int) -> tuple[Path, Path, dict]:
    """Export from weeks 2-3, label (simulated), merge into the training file as version 2."""
    from tuneforge.monitoring.curate import pick, write_export
    from tuneforge.monitoring.log_reader import read_served
    from tuneforge.monitoring.merge_labels import merge_labels
    from tuneforge.monitoring.monitor import RunView
    from tuneforge.registry.loaded_run import load_run

    rows = read_served(log_file, run_dir.name, sim.T0 + 7 * sim.DAY, sim.T0 + 21 * sim.DAY)
    view = RunView(load_run(run_dir))
    picked = pick(rows, view.embed([r.text for r in rows]), view.reference(0), count)
    export = work / "to_label.jsonl"
    write_export(picked, export, {"model": run_dir.name, "request_log": str(log_file), "period": "days 8-21"})
    labelled = work / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({**p, "label": truth[p["text"]]}) + "\n" for p in picked))
    (work / "labelled.jsonl.meta.json").write_text((work / "to_label.jsonl.meta.json").read_text())
    lineage = merge_labels(labelled, work / "data" / "b77-v1.jsonl", work / "data" / "b77-v2.jsonl",
                           allow_new=True)
    new_only = work / "data" / "new-labelled.jsonl"
    new_only.write_text("".join(json.dumps({"text": p["text"], "label": truth[p["text"]]}) + "\n" for p in picked))
    reasons: dict[str, int] = {}
    for p in picked:
        for r in p["reasons"]:
            reasons[r] = reasons.get(r, 0) + 1
    return new_only, export, {"lineage": lineage, "reasons": reasons, "exported": len(picked)}


def gate_table(result: Any) -> list[dict[str, Any]]:
    return [{"model": result.run_dir.name, "set": r["set"], "examples": r["examples"], "champion": r["champion"],
             "candidate": r["candidate"], "difference": r["difference"], "p": r["p_value"],
             "passed": result.decision.passed} for r in result.decision.table]


def planted(v1: Path, new_data: Path, work: Path, runs: Path) -> dict[str, Any]:
    """A model trained on the curated texts with shuffled labels, gated like the retrain (run in its own process)."""
    from tuneforge.monitoring.retrain import retrain

    rows = [json.loads(x) for x in new_data.read_text().splitlines()]
    shuffled = [r["label"] for r in rows]
    random.Random(7).shuffle(shuffled)
    planted_file = work / "data" / "shuffled.jsonl"
    planted_file.write_text("".join(json.dumps({"text": r["text"], "label": lab}) + "\n"
                                    for r, lab in zip(rows, shuffled, strict=True)))
    # from the registered name, so that it becomes a version of the same model (promote must then refuse it)
    worse = retrain(MODEL, planted_file, replay=0.0, workspace=runs, name=PLANTED,
                    overrides=["training.max_steps=30", "tracking.mlflow=true"], quiet=True)
    out = {"gate": gate_table(worse), "passed": worse.decision.passed, "reasons": worse.decision.reasons,
           "registered": worse.registered}
    (RESULTS / "drift_sim_planted.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def main() -> None:
    import argparse

    import torch

    from tuneforge.monitoring import registry_aliases as ra
    from tuneforge.monitoring.retrain import retrain
    from tuneforge.serving.request_log import log_path

    parser = argparse.ArgumentParser()
    parser.add_argument("--export", type=int, default=500, help="Requests exported for labelling.")
    parser.add_argument("--name", default="b77-v2", help="The retrain's run folder name.")
    parser.add_argument("--steps", type=int, default=60, help="Retrain steps.")
    parser.add_argument("--replay", type=float, default=0.3)
    parser.add_argument("--lr", type=float, help="Retrain learning rate (default: the deployed run's).")
    parser.add_argument("--out", default="drift_sim_week4.json", help="Results file under bench/results.")
    parser.add_argument("--planted-only", action="store_true", help="Only the shuffled-label model (run it in a "
                                                                    "second process while the retrain trains).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    train, test, labels = sim.load_banking(require_shared("data/banking77"))
    pools = sim.split_intents(train, test, labels, seed=0)
    work, runs = RESULTS / "drift_sim", RESULTS / "drift_sim" / "runs"
    v1, log_file = runs / "b77-v1", log_path(runs)
    per_day = 40
    truth = truth_of_month(pools, per_day, 21)
    register_first(v1, runs)
    new_data = work / "data" / "new-labelled.jsonl"
    if args.planted_only:
        while not (work / "data" / f"curated-{args.export}.done").is_file():
            time.sleep(5)  # the main process writes the curated file first
        planted(v1, new_data, work, runs)
        return
    new_data, export, curation = curate(v1, log_file, truth, work, args.export)
    (work / "data" / f"curated-{args.export}.done").write_text("")
    curation["held_back_share"] = sum(truth[json.loads(x)["text"]] in pools["held"]
                                      for x in export.read_text().splitlines()) / curation["exported"]
    good = retrain(MODEL, new_data, replay=args.replay, workspace=runs, name=args.name,
                   overrides=[f"training.max_steps={args.steps}", "tracking.mlflow=true",
                              *([f"training.learning_rate={args.lr}"] if args.lr else [])], quiet=True)
    promoted = False
    if good.decision.passed and good.registered:
        ra.promote(MODEL, good.registered[1], workspace=runs, reason="drift retrain passed its gate")
        promoted = True
    champion = ra.current_champion(MODEL, workspace=runs)
    server = sim.LiveServer(runs)
    try:
        time.sleep(2.5)  # the server re-reads the champion alias every 2 s
        week4 = sim.send_month(server, MODEL, pools, sim.month_shifts("drift"), sim.T0, log_file, per_day,
                               seed=2, days=range(21, 28))
    finally:
        server.close()
    champion_dir = champion.run_dir
    verdict = sim.monitor_days(champion_dir, log_file, 21, 7, sim.T0, names=[MODEL, champion_dir.name])
    live = [w["live_accuracy"] for w in verdict["windows"] if "live_accuracy" in w]
    hits, total = sum(a["correct"] for a in live), sum(a["labelled"] for a in live)
    alarm_days = [21 + d for d in sim.alarm_day_numbers(verdict)]
    label = "after retrain" if promoted else "retrain refused"
    row = {"period": f"week 4: {label} ({champion_dir.name} is champion)", "days": "22-28",
           "drifted traffic": "70%-70%", "served accuracy": sum(t["accuracy"] for t in week4) / len(week4),
           "live accuracy (feedback)": hits / total if total else None,
           "windows drifted": f"{sum(w['status'] == 'drift' for w in verdict['windows'])}/7",
           "alarms": len(alarm_days), "first alarm (day)": alarm_days[0] if alarm_days else "-"}
    planted_file = RESULTS / "drift_sim_planted.json"
    while not planted_file.is_file():
        time.sleep(5)  # the second process gates the planted model
    worse = json.loads(planted_file.read_text())
    refused_promote = None
    if worse["registered"] and worse["registered"][0] == MODEL:
        try:
            ra.promote(MODEL, int(worse["registered"][1]), workspace=runs)
        except Exception as exc:  # the gate's refusal: promote says it failed its gate
            refused_promote = str(exc)
    out = {"row": row, "traffic": week4, "gate": gate_table(good) + worse["gate"],
           "good_passed": good.decision.passed, "good_reasons": good.decision.reasons,
           "worse_passed": worse["passed"], "worse_reasons": worse["reasons"],
           "promoted": promoted, "planted_promote_refused": refused_promote,
           "champion": ra.current_champion(MODEL, workspace=runs).version, "curation": curation,
           "counts": good.counts, "verdict": verdict, "minutes": (time.time() - started) / 60,
           "args": vars(args), "history": [e.__dict__ for e in ra.history(MODEL, workspace=runs)]}
    (RESULTS / args.out).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: out[k] for k in ("row", "good_passed", "worse_passed", "promoted", "champion")},
                     indent=1, default=str))
    if args.out == "drift_sim_week4.json":
        sim.rewrite_doc()


if __name__ == "__main__":
    main()
