"""A real uvicorn server on 127.0.0.1 in a thread, for tests that drive tuneforge's server with the official client.

Shared by the serve, jobs, dashboard and monitoring tests so each starts servers the same way: bound to
127.0.0.1 on a free port, started within a bounded wait, stopped when the block ends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx2", reason="the openai client's HTTP library (pip install openai)")
openai = pytest.importorskip("openai", reason="pip install openai")
pytest.importorskip("fastapi", reason="pip install tuneforge[serve]")
pytest.importorskip("uvicorn", reason="pip install tuneforge[serve]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    key: str
    app: Any
    workspace: Path

    def client(self, key: str | None = None) -> Any:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.key, max_retries=0, timeout=60)

    def post(self, path: str, body: Any = None, key: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"} if key != "" else {}
        return httpx.post(f"{self.url}{path}", json=body, headers={**headers, **kw.pop("headers", {})}, timeout=60,
                          **kw)

    def get(self, path: str, key: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"} if key != "" else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=60)


def admin_key(workspace: Path, name: str = "tests", scope: str = "admin") -> str:
    from tuneforge.serving.keys import KeyStore, store_path

    return KeyStore(store_path(workspace)).create(name, scope)[1]


@contextmanager
def running_server(settings: Any, key: str | None = None) -> Iterator[Server]:
    """uvicorn serving `create_app(settings)` on 127.0.0.1 until the block ends (start-up waits 30 s at most)."""
    import uvicorn

    from tuneforge.serving.app import create_app

    secret = key or admin_key(settings.workspace)
    app = create_app(settings)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(300):  # bounded: 30 s at most
        if uv.started or not thread.is_alive():
            break
        time.sleep(0.1)
    assert uv.started, "uvicorn did not start"
    try:
        yield Server(f"http://127.0.0.1:{port}", secret, app, Path(settings.workspace))
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
