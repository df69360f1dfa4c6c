"""The dashboard over a real uvicorn on 127.0.0.1 (httpx, no browser): every route refuses without a session or
key and with a too-weak scope, the session cookie holds no key, CSRF tokens are required, user-controlled strings
are escaped, and the curves endpoint reads a run that is still being written.

The workspace is written by hand (no training): run folders as tuneforge leaves them, one with hostile names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from serve_harness import Server, admin_key, httpx, running_server

EVIL_RUN = '<img src=x onerror="alert(1)">'
EVIL_LABEL = "<script>alert('label')</script>"
# (method, path) of every dashboard route, with the scope it needs; {run} is a run folder's name
PAGES = [("GET", "/", "inference"), ("GET", "/ui/runs/plain", "inference"),
         ("GET", "/ui/runs/plain/report", "inference"), ("GET", "/ui/runs/plain/plots/curve.svg", "inference"),
         ("GET", "/ui/compare?run=plain&run=live", "inference"), ("GET", "/ui/playground", "inference"),
         ("GET", "/ui/registry", "inference"), ("POST", "/ui/logout", "inference"),
         ("GET", "/ui/jobs", "jobs"), ("GET", "/ui/jobs/ftjob-0", "jobs"), ("GET", "/ui/launch", "jobs"),
         ("POST", "/ui/launch", "jobs"), ("POST", "/ui/jobs/ftjob-0/cancel", "jobs")]
JSON_ROUTES = [("GET", "/ui/api/runs", "inference"), ("GET", "/ui/api/runs/plain/curves", "inference"),
               ("POST", "/ui/api/playground", "inference"), ("GET", "/ui/api/jobs/ftjob-0", "jobs")]


def _run_folder(root: Path, name: str, *, labels: list[str], status: str = "finished",
                history: list[dict[str, Any]] | None = None) -> Path:
    folder = root / name
    (folder / "plots").mkdir(parents=True)
    (folder / "config.yaml").write_text("name: x\ntask:\n  name: classification\nmethod:\n  name: lora\n"
                                        "model:\n  path: /models/tiny\n")
    (folder / "run.json").write_text(json.dumps({"status": status, "time": 1_700_000_000}))
    (folder / "plots" / "curve.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    if status == "finished":
        (folder / "metrics.json").write_text(json.dumps({
            "primary_metric": "macro_f1", "test": {"macro_f1": 0.5, "accuracy": 0.75},
            "per_class": {label: {"precision": 1.0, "recall": 0.5, "f1": 0.66, "support": 2} for label in labels},
            "train": {"steps": 4, "train_seconds": 1.5}}))
        (folder / "history.json").write_text(json.dumps(history or []))
        (folder / "report.html").write_text("<!DOCTYPE html><html><body><h1>Run report</h1></body></html>")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tuneforge.serving.app import ServeSettings

    workspace = tmp_path_factory.mktemp("dash") / "runs"
    workspace.mkdir()
    _run_folder(workspace, "plain", labels=["refund", "track"],
                history=[{"loss": 1.0, "step": 2}, {"eval_loss": 0.9, "eval_macro_f1": 0.4, "step": 2},
                         {"loss": 0.8, "step": 4}])
    _run_folder(workspace, EVIL_RUN, labels=[EVIL_LABEL, "ok"])
    _run_folder(workspace, "plain.ckpt-4", labels=["refund"])  # a job's servable checkpoint: not a run to list
    live = _run_folder(workspace, "live", labels=[], status="training")
    # a resumed run logs step 4 again (the later line counts); the last line is still being written
    (live / "logs").mkdir()
    (live / "logs" / "metrics.jsonl").write_text(
        '{"step": 2, "loss": 2.0}\n{"step": 4, "loss": 1.5}\n{"step": 4, "loss": 1.4}\n'
        '{"step": 4, "eval_loss": 1.6, "eval_macro_f1": 0.3}\n{"step": 6, "lo')
    with running_server(ServeSettings(workspace=workspace, rate_limit=100_000)) as running:
        yield running


def _client(server: Server) -> Any:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=60)


def _login(server: Server, key: str) -> Any:
    client = _client(server)
    page = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    resp = client.post("/ui/login", data={"key": key, "login_token": token, "next": "/ui/playground"})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/playground", resp.text
    return client


def _csrf(client: Any) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def _send(client: Any, method: str, path: str, **kw: Any) -> Any:
    return client.request(method, path, **kw)


def test_every_route_refuses_without_a_session_or_key(server: Server) -> None:
    client = _client(server)
    for method, path, _scope in PAGES:
        resp = _send(client, method, path)
        assert resp.status_code == 303, (path, resp.status_code)
        assert resp.headers["location"].startswith("/ui/login?next="), path
    for method, path, _scope in JSON_ROUTES:
        resp = _send(client, method, path, json={})
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key", path
    forged = _client(server)
    forged.cookies.set("tf_session", "not-a-session")
    assert forged.get("/").status_code == 303
    assert forged.get("/ui/api/runs").status_code == 401


def test_a_too_weak_key_is_refused_on_every_route(server: Server) -> None:
    weak = admin_key(server.workspace, "viewer", "inference")
    session = _login(server, weak)
    for client, headers in ((session, {}), (_client(server), {"Authorization": f"Bearer {weak}"})):
        for method, path, scope in PAGES + JSON_ROUTES:
            resp = _send(client, method, path, headers=headers)
            if scope == "jobs":
                assert resp.status_code == 403, (path, resp.status_code)
                assert "insufficient" in resp.text or "this route needs" in resp.text, path
            else:  # allowed (a POST without its CSRF token may still be refused, but not for the scope)
                assert resp.status_code != 401 and "insufficient" not in resp.text, (path, resp.text[:200])
    # a jobs key opens the jobs pages (the unknown job id is a 404 page, not a refusal)
    jobs = _login(server, admin_key(server.workspace, "ops", "jobs"))
    assert jobs.get("/ui/jobs").status_code == 200
    assert jobs.get("/ui/jobs/ftjob-0").status_code == 404


def test_session_cookie_holds_no_key_and_dies_with_logout_and_revocation(server: Server) -> None:
    from tuneforge.serving.keys import KeyStore, store_path

    key = admin_key(server.workspace, "temp", "inference")
    bad = _client(server)
    page = bad.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    refused = bad.post("/ui/login", data={"key": key + "x", "login_token": token})
    assert refused.status_code == 401 and "tf_session" not in refused.headers.get("set-cookie", "")
    stale = bad.post("/ui/login", data={"key": key, "login_token": "forged"})
    assert stale.status_code == 403  # the log-in form's own token (double submit)
    resp = _client(server)
    token = re.search(r'name="login_token" value="([^"]+)"', resp.get("/ui/login").text).group(1)
    login = resp.post("/ui/login", data={"key": key, "login_token": token, "next": "//evil.example/"})
    assert login.headers["location"] == "/"  # never off this server
    cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("tf_session="))
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert key not in cookie and key.split("-")[-1] not in cookie
    assert resp.get("/").status_code == 200
    assert resp.post("/ui/logout", data={}).status_code == 403  # no CSRF token
    csrf = _csrf(resp)
    assert resp.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert resp.get("/").status_code == 303
    again = _login(server, key)
    assert again.get("/").status_code == 200
    KeyStore(store_path(server.workspace)).revoke("temp")
    assert again.get("/").status_code == 303
    assert again.get("/ui/api/runs").status_code == 401


def test_state_changing_json_needs_the_csrf_token(server: Server) -> None:
    client = _login(server, server.key)
    resp = client.post("/ui/api/playground", json={"model": "plain", "input": "hi"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "csrf_failed"
    resp = client.post("/ui/api/playground", json={"model": "nope", "input": "hi"},
                       headers={"X-CSRF-Token": _csrf(client)})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    # a Bearer key carries no ambient credential: no token needed (same answer as the API)
    resp = server.post("/ui/api/playground", {"model": "nope", "input": "hi"})
    assert resp.status_code == 404


def test_pages_escape_run_names_and_labels(server: Server) -> None:
    client = _login(server, server.key)
    listing = client.get("/")
    assert listing.status_code == 200
    assert EVIL_RUN not in listing.text and "&lt;img src=x onerror=" in listing.text
    assert "%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E" in listing.text  # the link: one quoted segment
    run = client.get("/ui/runs/" + quote(EVIL_RUN, safe=""))
    assert run.status_code == 200
    for raw in (EVIL_RUN, EVIL_LABEL):
        assert raw not in run.text
    assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in run.text
    assert "script-src 'self'" in run.headers["content-security-policy"]
    compare = client.get("/ui/compare", params=[("run", EVIL_RUN), ("run", "plain")])
    assert compare.status_code == 200 and EVIL_RUN not in compare.text
    search = client.get("/", params={"q": "<b>nothing</b>"})
    assert "<b>nothing</b>" not in search.text and "&lt;b&gt;nothing&lt;/b&gt;" in search.text
    missing = client.get("/ui/runs/<i>gone</i>")
    assert missing.status_code == 404 and "<i>gone</i>" not in missing.text


def test_runs_search_and_curves_of_a_run_being_written(server: Server) -> None:
    client = _login(server, server.key)
    found = client.get("/ui/api/runs", params={"q": "training"}).json()["data"]
    assert [r["name"] for r in found] == ["live"]
    assert sorted(r["name"] for r in client.get("/ui/api/runs").json()["data"]) == sorted([EVIL_RUN, "live", "plain"])
    page = client.get("/", params={"q": "plain"})
    assert 'data-run="plain"' in page.text and 'data-run="live"' not in page.text
    live = client.get("/ui/api/runs/live/curves").json()
    assert live["status"] == "training"
    assert live["series"]["loss"] == [[2, 2.0], [4, 1.4]]  # the resumed step's later value; the torn line skipped
    assert live["series"]["eval_macro_f1"] == [[4, 0.3]] and live["points"] == 3
    done = client.get("/ui/api/runs/plain/curves").json()
    assert done["series"]["loss"] == [[2, 1.0], [4, 0.8]] and done["primary"] == "macro_f1"
    assert client.get("/ui/api/runs/..%2Fplain/curves").status_code == 404
    assert client.get("/ui/runs/plain/plots/..%2F..%2Fconfig.yaml").status_code == 404
    report = client.get("/ui/runs/plain/report")
    assert report.status_code == 200 and "default-src 'none'" in report.headers["content-security-policy"]


def test_live_metrics_log_appends_each_logged_step(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tuneforge.serving.dashboard.run_views import curves
    from tuneforge.training.callbacks import LIVE_METRICS, LiveMetricsLog

    (tmp_path / "config.yaml").write_text("name: r\n")
    log = LiveMetricsLog(tmp_path)
    for step, logs in ((1, {"loss": 2.5, "learning_rate": 1e-3}), (2, {"loss": float("nan")}),
                       (2, {"eval_loss": 2.0, "eval_runtime": 0.1})):
        log.on_log(None, SimpleNamespace(global_step=step, epoch=step / 2), None, logs=logs)
    lines = [json.loads(line) for line in (tmp_path / LIVE_METRICS).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]  # the NaN-only log writes nothing
    assert curves(tmp_path)["series"] == {"eval_loss": [[2, 2.0]], "learning_rate": [[1, 1e-3]], "loss": [[1, 2.5]]}
    with open(tmp_path / LIVE_METRICS, "a") as fh:  # killed while writing a line; the resumed run appends
        fh.write('{"step": 3, "lo')
    LiveMetricsLog(tmp_path).on_log(None, SimpleNamespace(global_step=3, epoch=1.5), None, logs={"loss": 2.0})
    assert curves(tmp_path)["series"]["loss"] == [[1, 2.5], [3, 2.0]]


def test_launch_form_uploads_the_file_and_creates_the_job(server: Server, tiny_causal: Path) -> None:
    from tuneforge.registry.base_models import add

    add(server.workspace, "tiny-lm", tiny_causal)
    client = _login(server, server.key)
    form = client.get("/ui/launch")
    assert form.status_code == 200 and '<option value="tiny-lm"' in form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    fields = {"csrf": csrf, "model": "tiny-lm", "type": "supervised", "tf_method": "lora", "n_epochs": "3",
              "batch_size": "auto", "suffix": "support", "tuneforge": '{"training": {"eval_steps": 2}}'}
    good = "".join(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"},
                                            {"role": "assistant", "content": "hello"}]}) + "\n" for i in range(12))
    bad = good + '{"messages": [{"role": "user", "content": "no answer"}]}\n{not json\n'
    refused = client.post("/ui/launch", data=fields, files={"file": ("<b>bad</b>.jsonl", bad.encode())})
    assert refused.status_code == 400 and "did not pass validation" in refused.text
    assert "line 14" in refused.text and "<b>bad</b>" not in refused.text
    assert 'value="support"' in refused.text  # the form comes back filled in
    no_token = client.post("/ui/launch", data={**fields, "csrf": "x"}, files={"file": ("a.jsonl", good.encode())})
    assert no_token.status_code == 403
    created = client.post("/ui/launch", data=fields, files={"file": ("chat.jsonl", good.encode())})
    assert created.status_code == 303, created.text[:500]
    job_id = created.headers["location"].rsplit("/", 1)[1]
    job = server.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["model"] == "tiny-lm"
    assert job["hyperparameters"]["n_epochs"] == 3 and job["hyperparameters"]["batch_size"] == "auto"
    assert job["tuneforge"]["extension"] == {"training": {"eval_steps": 2}, "method": {"name": "lora"}}
    page = client.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200 and f'data-job="/ui/api/jobs/{job_id}"' in page.text
    live = client.get(f"/ui/api/jobs/{job_id}").json()
    assert live["status"] == "queued" and live["run"] is None
    assert [e["message"] for e in live["events"]][:2] == [
        f"Validating training file: {job['training_file']}", "Files validated, moving job to queued state"]
    assert client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf}).status_code == 303
    assert server.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "cancelled"


@pytest.mark.slow  # creating an MLflow store migrates its schema: tens of seconds on a shared CPU
def test_registry_page_lists_versions_and_aliases_escaped(server: Server) -> None:
    import logging

    logging.getLogger("alembic").setLevel(logging.ERROR)
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(server.workspace / 'mlflow.db').resolve()}"
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("<b>intent", description="<i>support intents</i>")
    for _ in range(2):
        client.create_model_version("<b>intent", source=str(server.workspace / "plain" / "model"),
                                    tags={"method": "lora"})
    client.set_registered_model_alias("<b>intent", "champion", "2")
    page = _login(server, server.key).get("/ui/registry")
    assert page.status_code == 200
    assert "<b>intent" not in page.text and "&lt;b&gt;intent" in page.text
    assert "<i>support" not in page.text
    assert "champion → v2" in page.text
    rows = re.findall(r"<tr><td>v(\d+)</td><td>([^<]*)</td>", page.text)
    assert rows == [("2", "champion"), ("1", "")]
