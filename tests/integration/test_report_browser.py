"""report.html opened in headless Chromium (Debian's package): it renders, every image loads, no console errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (`apt-get install chromium`; `make test` installs it when it can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency) is not installed")
    return sync_api


def _open(report: Path) -> dict:
    sync_api = _browser()
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        # The flags keep Chromium off the (closed) network and out of a root sandbox it cannot create here.
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        failed: list[str] = []
        page.on("requestfailed", lambda req: failed.append(req.url))
        page.goto(report.as_uri(), wait_until="load")
        facts = page.evaluate("""() => ({
            title: document.title,
            h1: document.querySelector('h1') && document.querySelector('h1').innerText,
            tables: document.querySelectorAll('table').length,
            images: Array.from(document.images).map(i => ({
                src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth,
                h: i.naturalHeight})),
            height: document.body.scrollHeight,
        })""")
        page.screenshot(path=str(report.with_suffix(".png")), full_page=False)
        browser.close()
    facts["errors"], facts["failed"] = errors, failed
    return facts


def _check(facts: dict, min_images: int) -> None:
    assert facts["errors"] == [], facts["errors"]
    assert facts["failed"] == [], facts["failed"]  # self-contained: nothing fetched
    assert len(facts["images"]) >= min_images
    for img in facts["images"]:
        assert img["ok"] and img["w"] > 100 and img["h"] > 100, img
        assert img["src"].startswith("data:image/png;base64"), img
    assert facts["tables"] >= 1 and facts["height"] > 900


def test_run_report_renders_in_chromium(tiny_bert: Path, tmp_path: Path) -> None:
    import tuneforge
    from tuneforge.config import parse_config

    _browser()
    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(20))
    cfg = base_config(tiny_bert, data, tmp_path / "runs", name="html", training={"epochs": 2})
    cfg["evaluation"] = {"baselines": "auto"}
    tuneforge.train(parse_config(cfg), quiet=True)
    facts = _open(tmp_path / "runs" / "html" / "report.html")
    _check(facts, min_images=3)  # learning curve, per-class F1, confusion matrix
    assert facts["title"] == "Run report: html" and facts["h1"] == "Run report: html"


def test_comparison_report_renders_in_chromium(tiny_bert: Path, tmp_path: Path) -> None:
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.evaluation.compare import compare

    _browser()
    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(20))
    cfg = parse_config(base_config(tiny_bert, data, tmp_path / "runs", name="cmp", training={"epochs": 2},
                                   compare={"bootstrap_samples": 100, "permutations": 100, "latency_examples": 5}))
    tuneforge.train(cfg, quiet=True)
    result = compare(cfg, runs=[str(tmp_path / "runs" / "cmp")])
    facts = _open(result.out_dir / "report.html")
    _check(facts, min_images=2)  # scores with CIs, score vs latency
    assert facts["h1"] == "Comparison: cmp"
