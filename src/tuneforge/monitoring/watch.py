"""`--watch`: re-check on a schedule and POST the verdict to a webhook when it is not ok."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from tuneforge.errors import TuneforgeError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str) -> float:
    """'90s', '30m', '12h', '7d', '2w' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise TuneforgeError(f"{option} {text!r} is not a duration", fix=f"write e.g. {option} 7d (s, m, h, d, w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> str | None:
    """POST JSON; returns None on success, else why it failed (a webhook outage must not stop the watch)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "tuneforge-monitor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # the user's own URL
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except Exception as exc:  # network errors, HTTP errors, bad URLs: reported, watch continues
        return f"{type(exc).__name__}: {exc}"


def notify_payload(verdict: dict[str, Any], report: str) -> dict[str, Any]:
    return {"source": "tuneforge monitor", "model": verdict["model"], "status": verdict["status"],
            "exit_code": verdict["exit_code"], "reasons": verdict["reasons"][:20], "alarms": verdict["alarms"],
            "report": report, "checked_at": time.time()}


def watch(check: Callable[[], tuple[dict[str, Any], str]], interval_s: float, checks: int | None,
          webhook: str | None, notify_on: str, say: Callable[[str], None],
          sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Run `check` every `interval_s` (`checks` times, or until interrupted); returns the last verdict."""
    levels = {"warn": ("warn", "drift"), "drift": ("drift",), "always": ("ok", "warn", "drift")}[notify_on]
    done, verdict = 0, {}
    while checks is None or done < checks:
        verdict, report = check()
        done += 1
        say(f"check {done}: {verdict['status']} ({'; '.join(verdict['reasons'][:1])})")
        if webhook and verdict["status"] in levels:
            failed = post_webhook(webhook, notify_payload(verdict, report))
            say(f"webhook {'failed: ' + failed if failed else 'sent'}")
        if checks is None or done < checks:
            sleep(interval_s)
    return verdict
