"""The page and plot of bench/drift_sim.py (docs/bench/drift_sim.md, .png, .svg), from its results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, markdown_table
from drift_traffic import FEEDBACK_SHARE, KNOWN_POOL, PER_INTENT


def alarm_day_numbers(verdict: dict[str, Any]) -> list[int]:
    ends = [w["end_iso"] for w in verdict["windows"]]
    return [ends.index(a) + 1 for a in verdict["alarms"]]


def plot(verdict: dict[str, Any], traffic: list[dict[str, Any]], quiet: list[dict[str, Any]], week4: Any,
         path: Path) -> None:
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.4), sharex=True)
    days = [t["day"] for t in traffic]
    top.plot(days, [t["shift"] for t in traffic], "k--", label="drifted share of traffic")
    top.plot(days, [t["accuracy"] for t in traffic], "o-", ms=3, label="served accuracy (true labels)")
    live = [(i + 1, w["live_accuracy"]) for i, w in enumerate(verdict["windows"]) if "live_accuracy" in w]
    top.plot([d for d, _ in live], [a["correct"] / a["labelled"] for _, a in live], "s", ms=3,
             label="live accuracy (feedback)")
    if week4:
        top.plot([t["day"] for t in week4["traffic"]], [t["accuracy"] for t in week4["traffic"]], "o-", ms=3,
                 color="green", label="week 4: " + ("retrained champion" if week4["promoted"]
                                                    else "b77-v1 still champion (retrain refused)"))
    top.set_ylim(0, 1.02)
    top.legend(fontsize=8, loc="lower left")
    top.set_title("BANKING77 drift month through the server (daily windows)")
    for name in sorted({t["name"] for w in verdict["windows"] for t in w["tests"]}):
        pts = [(i + 1, -math.log10(max(1e-12, t["p_adjusted"]))) for i, w in enumerate(verdict["windows"])
               for t in w["tests"] if t["name"] == name]
        bottom.plot(*zip(*pts, strict=True), marker=".", label=name)
    bottom.axhline(2, color="red", ls="--", lw=1, label="alpha 0.01")
    for d in alarm_day_numbers(verdict):
        for ax in (top, bottom):
            ax.axvline(d, color="red", alpha=0.25, lw=5)
    for edge in (7.5, 14.5, 21.5):
        for ax in (top, bottom):
            ax.axvline(edge, color="grey", lw=0.8)
    bottom.set_ylabel("-log10 p (Holm)")
    bottom.set_xlabel(f"day (red: alarms; {len(quiet)} no-drift months: "
                      f"{sum(q['alarms'] for q in quiet)} alarms in total)")
    bottom.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)


def week4_text(week4: dict[str, Any]) -> str:
    cols = ["model", "set", "examples", "champion", "candidate", "difference", "p", "passed"]
    cur = week4["curation"]
    lin = cur["lineage"]
    args = week4.get("args", {})
    command = "OMP_NUM_THREADS=1 nice -n 10 python bench/drift_retrain.py" + (
        f" --name {args['name']}" if args.get("name", "b77-v2") != "b77-v2" else "") + (
        " & python bench/drift_retrain.py --planted-only (a second process)")
    return f"""Command: `{command}` ({week4['minutes']:.0f} min wall; export {args.get('export')}, retrain
{args.get('steps')} steps, replay {args.get('replay')}, learning rate {args.get('lr') or '2e-4, the run default'}).
`--export-for-labelling` logic on days 8-21 picked {cur['exported']} requests (reasons: {cur['reasons']};
{cur['held_back_share']:.0%} of them held-back intents); the simulated labeller gave each its true label;
`data merge-labels` made dataset version {lin['version']} ({lin['rows']} rows, +{lin['labelled']['added']},
fingerprint `{lin['fingerprint'][:16]}`, lineage to the request log and {len(lin['labelled']['request_ids'])}
response ids). `retrain b77 --data new-labelled.jsonl` (continued from the champion; counts {week4['counts']})
and a planted model trained on the same texts with **shuffled labels** (replay 0, 30 steps) were gated against the
champion on the frozen original test split and the new test split:

{markdown_table([{**g, "passed": "yes" if g["passed"] else "no"} for g in week4['gate']], cols)}

Retrain: gate {'passed' if week4['good_passed'] else 'REFUSED'} ({'; '.join(week4['good_reasons'])});
promoted: {week4['promoted']} (the champion is version {week4['champion']}). Planted shuffled-label model: gate
{'passed (!)' if week4['worse_passed'] else 'refused'} ({'; '.join(week4['worse_reasons'])}).
Promotion attempt of the planted model: {planted_promotion(week4)}
Week 4 traffic (the week-3 mix, 70% drifted) went to the registered name `b77`, which the server answers with its
`champion` run without a restart, and was monitored against the champion's own held-out data (row "week 4"
above). {"" if week4['promoted'] else "With the retrain refused, the champion stayed b77-v1, so week 4 shows the "
                                     "drift still there (the issue's 'retrain promoted' is not met by this run)."}
{WEEK4_NOTES if week4['promoted'] else ""}"""


# Written by hand after the runs of 2026-12-02 (kept on the page when the page is rewritten from the results).
WEEK4_NOTES = """\
The first week-4 attempt (`--name b77-v3`: 60 steps at the run's learning rate 2e-4) was refused by the gate: old test
0.826 -> 0.801 (p = 0.30), new test 0.64 -> 0.68 (p = 0.65, no significant gain), so nothing was promoted. The row
above is the second attempt, `python bench/drift_retrain.py --name b77-v5 --steps 150 --lr 5e-4`, run by the lead on
2026-12-02 with main's code (the machine idle but for one other benchmark): it passed and was promoted; the planted
rows are from the first invocation's `--planted-only` process.

Reading week 4: served accuracy is back from 0.52 (week 3) to 0.82 after the promotion, with no server restart. The
input-drift alarm stays on (7/7 windows): the traffic really is 70% unlike the original training data, and the new
champion's held-out reference is mostly the old distribution plus 50 curated examples, so the drift tests keep
saying the inputs moved. What the retrain fixes is the quality (live accuracy from feedback 0.65, against 0.48 in the
week 4 of the refused attempt); a reference rebuilt from recent labelled traffic would be the way to silence the
alarm, not built."""


def planted_promotion(week4: dict[str, Any]) -> str:
    planted = RESULTS / "drift_sim_planted.json"
    registered = json.loads(planted.read_text()).get("registered") if planted.is_file() else None
    if week4.get("planted_promote_refused") and registered and registered[0] == "b77":
        return f"refused (`{week4['planted_promote_refused'][:200]}`)."
    return ("not tried: in this run the planted model was retrained from the run folder, so MLflow registered it "
            "under its own name rather than as a version of `b77` (bench/drift_retrain.py now retrains it from "
            "the registered name).")


def rewrite_doc() -> Path | None:
    """The page from the saved results (drift_sim.json, and drift_sim_week4.json when week 4 has run)."""
    saved = RESULTS / "drift_sim.json"
    if not saved.is_file():
        return None
    data = json.loads(saved.read_text())
    meta, rows = data["meta"], data["rows"]
    week4_file = RESULTS / "drift_sim_week4.json"
    week4 = json.loads(week4_file.read_text()) if week4_file.is_file() else None
    month = [r for r in rows if "period" in r and not r["period"].startswith("week 4")]
    quiet = [r for r in rows if "month" in r]
    if week4:
        month.append(week4["row"])
    plot(meta["verdict_weeks_1_3"], meta["traffic"], quiet, week4, ROOT / "docs" / "bench" / "drift_sim.png")
    return write_doc(month, quiet, meta, week4)


def write_doc(rows: list[dict[str, Any]], quiet: list[dict[str, Any]], meta: dict[str, Any],
              week4: dict[str, Any] | None) -> Path:
    cols = ["period", "days", "drifted traffic", "served accuracy", "live accuracy (feedback)", "windows drifted",
            "alarms", "first alarm (day)"]
    qcols = ["month", "seed", "served accuracy", "windows drifted", "alarms", "smallest Holm p"]
    gate = week4_text(week4) if week4 else ("Not run yet: `python bench/drift_retrain.py` (after this script) "
                                             "retrains, gates, promotes and sends week 4.")
    text = f"""# Drift simulation: a month of BANKING77 traffic through the server

**How it was produced ({meta['date']}, {meta['machine']}):** `{meta['command']}` ({meta['minutes']:.0f} min wall).
Other work shared the machine's 2 cores (one torch thread, nice 10), so wall time is an upper bound.
Run: full fine-tune of the default MiniLM-L6 on {meta['train_rows']} BANKING77 training rows of 67 intents
({PER_INTENT} each; 10 intents held back but kept in the label set), {meta['steps']} steps of batch 32, test
accuracy {meta['test_accuracy']:.4f} on its own held-out split. Traffic: {meta['per_day']} inputs a day, 8 per
`/v1/classify` request to uvicorn on 127.0.0.1, {FEEDBACK_SHARE:.0%} of them answered with the true label on
`/v1/feedback`; texts are BANKING77 rows the run never saw (known intents: a fixed, label-balanced pool of
{KNOWN_POOL} texts the months draw from). The drift month's requests all go through the server. For the ten
no-drift months, each pool text went through the server once and the months were written to the log with the
server's own `RequestLog` writer from those answers (same texts, same answers, simulated times): sending 12,000
more inputs through one torch thread on the shared 2 cores did not fit the time left.
Drifted traffic: half held-back intents, half known intents in a new phrasing
(casual opener, lower case, typos). Monitor: daily windows, reference = the run's validation + test splits
({meta['reference_rows']} rows), tests = embedding MMD (1000 permutations), token length (KS), out-of-vocabulary
rate (Mann-Whitney), predicted labels (chi²), confidence (KS), live accuracy (binomial, when >= 20 labelled);
Holm at alpha 0.01 per window; an alarm needs 2 consecutive drifted windows.

## The drift month

{markdown_table(rows, cols)}

An alarm is raised once per run of drifted windows (on its second window), so a week whose windows continue a run
that alarmed earlier shows drifted windows but no new alarm. "served accuracy" is measured against every input's
true label; "live accuracy" is what the monitor sees from the feedback share.

![drift month](drift_sim.png)

## Ten no-drift months (week-1 traffic for 30 days, one seed each)

{markdown_table(quiet, qcols)}

False alarms: **{sum(q['alarms'] for q in quiet)}** in {len(quiet)} months (target: at most 1);
drifted windows without an alarm: {sum(q['windows drifted'] for q in quiet)} of {30 * len(quiet)}.

## Week 4: retrain and gate

{gate}
"""
    doc = ROOT / "docs" / "bench" / "drift_sim.md"
    doc.write_text(text)
    return doc
