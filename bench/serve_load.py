"""Load on `tuneforge serve`: 1/8/32 concurrent clients, dynamic batching on vs off (the baseline, measured in the
same run), one LoRA run vs requests spread over four LoRA runs on one base. Greedy chat completions on
TinyStories-656K LoRA runs (trained here for a few steps: this measures serving, not answers), prompts are GSM8K test
questions. Prints requests/s, p50/p99 latency and errors per setting.

    OMP_NUM_THREADS=1 python bench/serve_load.py                       # the full table
    python bench/serve_load.py --clients 1,8 --requests 16 --max-tokens 8

Writes bench/results/serve_load.json and docs/bench/serve_load.md.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, machine, markdown_table, print_table, require_shared, save

ADAPTERS = ["serve-lora-a", "serve-lora-b", "serve-lora-c", "serve-lora-d"]


def prepare_runs(work: Path, model: Path, data: Path) -> Path:
    """Four LoRA SFT runs (different seeds) on one base; reused when already there."""
    import tuneforge
    from tuneforge.config import parse_config

    runs = work / "runs"
    train = work / "train.jsonl"
    with open(data / "train.jsonl") as f, open(train, "w") as out:
        for _, line in zip(range(64), f, strict=False):
            row = json.loads(line)
            out.write(json.dumps({"prompt": row["question"], "completion": row["answer"]}) + "\n")
    for seed, name in enumerate(ADAPTERS):
        if (runs / name / "metrics.json").is_file():
            continue
        tuneforge.train(parse_config({
            "name": name, "output_dir": str(runs), "model": {"path": str(model)},
            "data": {"train": str(train), "max_length": 256}, "task": {"name": "sft", "max_new_tokens": 16},
            "method": {"name": "lora", "r": 8}, "tracking": {"mlflow": False}, "evaluation": {"baselines": []},
            "training": {"epochs": 1, "max_steps": 4, "batch_size": 8, "learning_rate": 5e-3, "seed": seed,
                         "threads": 1}}), quiet=True)
    return runs


def start_server(runs: Path, batching: bool) -> tuple[Any, threading.Thread, str, str]:
    import uvicorn

    from tuneforge.serving.app import ServeSettings, create_app
    from tuneforge.serving.keys import KeyStore, store_path

    _key, secret = KeyStore(store_path(runs)).create("bench")
    settings = ServeSettings(workspace=runs, max_adapters=4, rate_limit=10**9, retention_days=None,
                             max_batch=32 if batching else 1, batch_window_ms=10 if batching else 0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.1)
    return server, thread, f"http://127.0.0.1:{port}", secret


def load(url: str, key: str, prompts: list[str], models: list[str], clients: int, requests: int,
         max_tokens: int) -> dict[str, Any]:
    import httpx2

    def one(i: int, client: Any) -> tuple[float, bool]:
        body = {"model": models[i % len(models)], "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]}
        started = time.perf_counter()
        try:
            ok = client.post(f"{url}/v1/chat/completions", json=body).status_code == 200
        except httpx2.HTTPError:
            ok = False
        return time.perf_counter() - started, ok

    def worker(c: int) -> list[tuple[float, bool]]:
        with httpx2.Client(headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
            return [one(i, client) for i in range(c, requests, clients)]

    for i in range(len(models)):  # warm: every adapter resident before timing
        worker_client = httpx2.Client(headers={"Authorization": f"Bearer {key}"}, timeout=300)
        one(i, worker_client)
        worker_client.close()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(worker, range(clients)) for r in rs]
    wall = time.perf_counter() - started
    latencies = sorted(lat for lat, _ in results)
    return {"requests/s": len(results) / wall, "p50 ms": 1000 * latencies[len(latencies) // 2],
            "p99 ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "errors": sum(not ok for _, ok in results), "requests": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=64, help="Requests per setting.")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    data, model = require_shared("data/gsm8k"), require_shared("models/tinystories-656k")
    work = RESULTS / "serve_load"
    work.mkdir(parents=True, exist_ok=True)
    runs = prepare_runs(work, model, data)
    with open(data / "test.jsonl") as f:
        prompts = [json.loads(line)["question"] for _, line in zip(range(64), f, strict=False)]
    rows: list[dict[str, Any]] = []
    for batching in (False, True):
        server, thread, url, key = start_server(runs, batching)
        for adapters in ("one", "mixed 4"):
            models = ADAPTERS[:1] if adapters == "one" else ADAPTERS
            for clients in map(int, args.clients.split(",")):
                stats = load(url, key, prompts, models, clients, args.requests, args.max_tokens)
                rows.append({"batching": "on (32, 10 ms)" if batching else "off (baseline)", "adapters": adapters,
                             "clients": clients, **stats})
                print(rows[-1], flush=True)
        server.should_exit = True
        thread.join(timeout=60)
    columns = ["batching", "adapters", "clients", "requests/s", "p50 ms", "p99 ms", "errors", "requests"]
    print_table("tuneforge serve under load (greedy chat, TinyStories-656K LoRA)", rows, columns)
    meta = {"machine": machine(), "requests": args.requests, "max_tokens": args.max_tokens, "clients": args.clients}
    save("serve_load", rows, meta)
    (ROOT / "docs" / "bench" / "serve_load.md").write_text(
        f"# `tuneforge serve` under load\n\n`{' '.join(['python bench/serve_load.py', *_given(args)])}` on "
        f"{meta['machine']}. Each setting sends {args.requests} greedy chat completions (max_tokens "
        f"{args.max_tokens}, GSM8K test questions as prompts) from N concurrent clients to four TinyStories-656K "
        "LoRA runs on one base (`--max-adapters 4`, all resident after a warm-up request each). Batching off is "
        "`--max-batch 1`; on is `--max-batch 32 --batch-window-ms 10`. Mixed requests go round-robin over the four "
        "adapters; batches only group requests for the same adapter. The server and the clients share the "
        "machine's cores with other work (about 6 agents on 2 cores), so absolute figures are noisy; compare rows "
        "measured in the same run.\n\n" + markdown_table(rows, columns) + "\n")


def _given(args: argparse.Namespace) -> list[str]:
    return [f"--clients {args.clients}", f"--requests {args.requests}", f"--max-tokens {args.max_tokens}"]


if __name__ == "__main__":
    main()
