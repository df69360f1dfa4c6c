"""The dashboard in headless Chromium (Debian's package, driven by Playwright) against a real uvicorn on 127.0.0.1
with a local jobs worker: log in, launch a job from the form and watch its curve gain points, open a run page and
the side-by-side view, chat in the playground; no console errors, no page errors. Screenshots are kept in
test-artifacts/dashboard/ at the repository root (git-ignored)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, base_config, make_intent_rows, write_jsonl
from serve_harness import Server, running_server

pytestmark = pytest.mark.slow  # trains three tiny runs and a job in a child process: minutes on a shared CPU
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHAT = [{"messages": [{"role": "user", "content": f"{w} order {i}"},
                      {"role": "assistant", "content": f"Your {w} is done."}]}
        for i, w in enumerate(["refund", "track", "cancel"] * 16)]
# the job's run: a tuneforge extension through the form (quick evaluation; a logged step and a checkpoint every
# 2 steps, so the curve grows while the page watches)
EXTENSION = {"training": {"eval_steps": 2, "threads": 1, "learning_rate": 5e-3}, "evaluation": {"baselines": []},
             "task": {"max_new_tokens": 4}, "data": {"max_length": 48}, "tracking": {"mlflow": False}}


def _browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (`apt-get install chromium`; `make test` installs it when it can)")
    return pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency) is not installed")


def _train(cfg: dict[str, Any]) -> None:
    import tuneforge
    from tuneforge.config import parse_config

    tuneforge.train(parse_config(cfg), quiet=True)


@pytest.fixture(scope="module")
def workspace(tiny_bert: Path, tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _browser()
    tmp = tmp_path_factory.mktemp("dash-browser")
    runs = tmp / "runs"
    intents = write_jsonl(tmp / "intents.jsonl", make_intent_rows(10))
    quick = {"epochs": 1, "max_steps": 4, "eval_steps": 2, "threads": 1}
    _train(base_config(tiny_bert, intents, runs, name="intent", training=quick))
    _train(base_config(tiny_bert, intents, runs, name="intent-lora", method={"name": "lora", "r": 4},
                       training={**quick, "learning_rate": 5e-2}))
    chat = base_config(tiny_causal, write_jsonl(tmp / "chat.jsonl", CHAT), runs, name="chat",
                       task={"name": "sft", "max_new_tokens": 6}, training={**quick, "batch_size": 8})
    chat["data"]["max_length"] = 48
    _train(chat)
    from tuneforge.registry.base_models import add

    add(runs, "tiny-llama", tiny_causal)  # `tuneforge models add tiny-llama PATH`
    write_jsonl(tmp / "upload" / "support-chat.jsonl", CHAT)
    return runs


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[Server]:
    from tuneforge.serving.app import ServeSettings
    from tuneforge.serving.worker import Worker

    worker = Worker(workspace, threads=1, poll_s=0.3)  # what `tuneforge serve --workers 1` runs beside the server
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with running_server(ServeSettings(workspace=workspace, rate_limit=100_000)) as running:
            yield running
    finally:
        worker.stop.set()  # the worker stops its training child (a checkpoint first) and returns
        thread.join(timeout=60)
        if worker.child is not None and worker.child.exitcode is None:
            worker.child.kill()


def _points(page: Any, selector: str) -> int:
    value = page.get_attribute(selector, "data-points")
    return int(value) if value else 0


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_dashboard_flow_in_chromium(server: Server, workspace: Path) -> None:
    sync_api = _browser()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    ARTIFACTS.mkdir(parents=True)
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.set_default_timeout(60_000)
        shot = lambda name: page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # noqa: E731

        # log in: the key goes into the form once; the session cookie is what the browser keeps
        page.goto(f"{server.url}/ui/launch")
        assert "/ui/login" in page.url
        page.fill("#key", server.key)
        shot("01-login")
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/ui/launch")
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["tf_session"]["httpOnly"] and cookies["tf_session"]["sameSite"] == "Strict"
        assert server.key not in json.dumps(list(cookies.values()))

        # launch a job from the form: upload, base model, method, epochs
        page.set_input_files("#file", str(workspace.parent / "upload" / "support-chat.jsonl"))
        page.select_option("#model", "tiny-llama")
        page.select_option("#tf_method", "full")
        page.fill("#n_epochs", "8")
        page.fill("#batch_size", "8")
        page.fill("#suffix", "support")
        page.click("summary")
        page.fill("#tuneforge", json.dumps(EXTENSION))
        shot("02-launch-form")
        page.click("#launch")
        page.wait_for_url(f"{server.url}/ui/jobs/ftjob-*")
        job_id = page.url.rsplit("/", 1)[1]

        # its curve gains points while it trains (the page polls; nothing reloads it)
        first = _wait(lambda: _points(page, "[data-job-curves]"), 180, "the job's first logged step")
        _wait(lambda: _points(page, "[data-job-curves]") > first, 180, f"more points than {first}")
        shot("03-job-training")
        _wait(lambda: page.inner_text("#job-status") in ("succeeded", "failed", "cancelled"), 240, "the job to end")
        assert page.inner_text("#job-status") == "succeeded", page.inner_text("#job-events")
        assert page.locator("#job-events li").count() >= 4
        assert page.inner_text("#job-model").startswith("ft:tiny-llama:")
        assert not page.is_visible("#job-actions")  # nothing to pause or cancel any more
        shot("04-job-done")

        # the runs list, then the job's run page: its curves, report, per-step points
        page.goto(f"{server.url}/")
        assert page.locator(f'tr[data-run="{job_id}"]').count() == 1
        assert page.locator('tr[data-run="intent"]').count() == 1
        page.fill("input[name=q]", "lora")
        page.click("form.search button")
        page.wait_for_url("**/?q=lora")
        assert page.locator("tbody tr").count() == 1
        shot("05-runs-search")
        page.goto(f"{server.url}/ui/runs/intent")
        _wait(lambda: _points(page, "[data-curves]"), 30, "the run's curves")
        assert page.locator("[data-curves] svg circle.point").count() >= 2
        page.frame_locator("iframe.report").locator("h1").wait_for()  # the report, embedded (sandboxed)
        assert page.frame_locator("iframe.report").locator("h1").inner_text() == "Run report: intent"
        page.wait_for_selector(".plots img")
        shot("06-run-page")

        # side by side: the metrics table and overlaid curves of two runs
        page.select_option("#other", "intent-lora")
        page.click("form.inline button")
        page.wait_for_url("**/ui/compare?run=intent&run=intent-lora")
        _wait(lambda: _points(page, "[data-compare]"), 30, "the overlaid curves")
        assert page.locator("table.compare th a").count() == 2
        assert page.locator("[data-compare] figure").first.locator("polyline").count() == 2
        shot("07-compare")

        # the playground: a chat turn with the job's fine-tuned model, a prediction from the classifier
        page.goto(f"{server.url}/ui/playground")
        fine_tuned = page.locator("#pg-model option", has_text=job_id).first.get_attribute("value")
        page.select_option("#pg-model", fine_tuned)
        page.fill("#pg-input", "refund order 3")
        page.click("#pg-send")
        page.wait_for_selector("#pg-log .msg.assistant")
        assert page.locator("#pg-log .msg.user").inner_text() == "refund order 3"
        shot("08-playground-chat")
        page.select_option("#pg-model", "intent")
        page.fill("#pg-input", "where is my parcel")
        page.click("#pg-send")
        reply = page.wait_for_selector("#pg-log .msg.assistant")
        assert any(label in reply.inner_text() for label in ("refund", "track", "cancel"))
        shot("09-playground-predict")
        page.goto(f"{server.url}/ui/registry")
        shot("10-registry")
        browser.close()
    print(f"screenshots: {ARTIFACTS}")
    assert errors == [], errors
