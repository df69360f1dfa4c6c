"""The verdict: windows -> ok / warn / drift with reasons, and the exit code a cron job or CI acts on.

Exit codes (documented in docs/monitoring.md): 0 ok, 3 warn, 4 drift; 2 is a user error (bad log, unknown run),
as for every tuneforge command."""

from __future__ import annotations

import datetime as dt
from typing import Any

EXIT_CODES = {"ok": 0, "warn": 3, "drift": 4}


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def alarms(windows: list[dict[str, Any]], persistence: int) -> list[int]:
    """Indexes of windows where the persistence rule fires: the `persistence`-th consecutive drifted window (a run
    of drift raises one alarm, at its start plus persistence - 1; an insufficient window breaks the run)."""
    fired, streak = [], 0
    for i, w in enumerate(windows):
        streak = streak + 1 if w["status"] == "drift" else 0
        if streak == persistence:
            fired.append(i)
    return fired


def _reason(w: dict[str, Any]) -> str:
    parts = [f"{t['name']} p={t['p_value']:.2g} (Holm {t['p_adjusted']:.2g}): {t['detail']}"
             for t in w["tests"] if t["name"] in w.get("rejected", [])]
    return f"{iso(w['start'])}..{iso(w['end'])}: " + "; ".join(parts)


def decide(model: str, log_file: str, windows: list[dict[str, Any]], settings: Any, reference: list[str],
           reference_rows: int) -> dict[str, Any]:
    fired = alarms(windows, settings.persistence)
    drifted = [i for i, w in enumerate(windows) if w["status"] == "drift"]
    if fired:
        status = "drift"
        reasons = [f"drift in {settings.persistence} consecutive windows, first alarm at {iso(windows[i]['end'])}"
                   for i in fired] + [_reason(windows[i]) for i in drifted]
    elif drifted:
        status = "warn"
        reasons = [f"{len(drifted)} window(s) drifted without persisting {settings.persistence} windows"] + \
                  [_reason(windows[i]) for i in drifted]
    else:
        status = "ok"
        tested = sum(w["status"] != "insufficient" for w in windows)
        reasons = [f"no test rejected at alpha {settings.alpha} (Holm) in {tested} tested window(s)"]
    for w in windows:
        w["start_iso"], w["end_iso"] = iso(w["start"]), iso(w["end"])
    return {"status": status, "exit_code": EXIT_CODES[status], "model": model, "request_log": log_file,
            "reasons": reasons, "alarms": [windows[i]["end_iso"] for i in fired],
            "settings": {"since_s": settings.since_s, "window_s": settings.window_s, "alpha": settings.alpha,
                         "correction": "holm", "persistence": settings.persistence,
                         "min_requests": settings.min_requests, "permutations": settings.permutations},
            "reference": {"files": reference, "rows": reference_rows}, "windows": windows}
