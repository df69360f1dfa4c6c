"""Measure real training steps: the same model build, method, encoded rows, collator and Trainer as `train`.

Each measurement runs in a fresh child process (`python -m tuneforge.estimate.dryrun JOB_DIR`), so one batch size's
allocations, caches and allocator state cannot leak into the next, and a batch that runs out of memory kills only
the child.

Peak memory. CUDA: `torch.cuda.max_memory_allocated()` over training. CPU: the growth of the resident set from just
before the model is built to its high-water mark during training. The high-water mark (VmHWM) is reset with
`/proc/self/clear_refs` once the model is loaded, so loading transients do not count and nothing is missed between
samples; where that file cannot be written a 2 ms psutil sampling thread stands in. Freed heap is handed back
(malloc_trim) before the baseline, so earlier work cannot hide later allocations.

Steps. The dry run starts with the epoch's longest batch (the sampler always puts it first; this step is warm-up:
optimizer states are allocated, kernels initialised), goes on with the batches training would see next, and ends
with the longest batch again, now in steady state. Every step after the first gives a (padded tokens, seconds)
sample for the step-time fit.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError


@dataclass(frozen=True)
class Measurement:
    batch: int
    peak_bytes: float  # growth over the pre-model baseline (CPU RSS / CUDA allocated)
    samples: list[tuple[int, float]]  # (padded tokens, seconds) of the timed steps
    step_tokens: list[int]  # every step, in order
    step_ends: list[float]  # seconds since training began, at the end of every step
    device: str
    peak_by_step: list[int] = field(default_factory=list)  # CPU: running peak growth at the end of every step
    out_of_memory: bool = False

    @property
    def mean_step_seconds(self) -> float:
        return sum(s for _, s in self.samples) / max(len(self.samples), 1)


def measure(cfg: Any, train_dataset: Any, labels: list[str], batch: int, steps: int, warmup: int = 1,
            mode: str = "dry", timeout: float | None = None) -> Measurement:
    """Train `warmup + steps` steps at micro-batch `batch` in a child process and measure them; the first `warmup`
    are not timed. mode "dry": see `_fixed_order`. mode "run": the real sampler, unchanged (a normal run)."""
    from tuneforge.config import dump_config

    with tempfile.TemporaryDirectory(prefix="tuneforge-plan-") as tmp:
        job = Path(tmp)
        (job / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        _save_quietly(train_dataset, job / "train")
        (job / "job.json").write_text(json.dumps({"batch": batch, "steps": steps, "warmup": warmup, "mode": mode,
                                                  "labels": labels}))
        proc = subprocess.run([sys.executable, "-m", "tuneforge.estimate.dryrun", str(job)], capture_output=True,
                              text=True, timeout=timeout)
        result = job / "result.json"
        if proc.returncode != 0 or not result.is_file():
            if proc.returncode in (-9, 137) or "out of memory" in proc.stderr.lower():
                return Measurement(batch, float("inf"), [], [], [], "unknown", out_of_memory=True)
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RunError(f"the dry run at batch {batch} failed (exit code {proc.returncode}):\n{tail}",
                           fix="run `tuneforge train` on the same config to see the full error")
        r = json.loads(result.read_text())
    return Measurement(batch, r["peak_bytes"], [tuple(s) for s in r["samples"]], r["tokens"], r["ends"], r["device"],
                       peak_by_step=r["peak_by_step"])


def _save_quietly(dataset: Any, path: Path) -> None:
    from datasets.utils import logging as ds_logging

    shown = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # a progress bar per measurement is noise in the plan's output
    try:
        dataset.save_to_disk(str(path))
    finally:
        if shown:
            ds_logging.enable_progress_bar()


# ---- child process ------------------------------------------------------------------------------------------


class _PeakRSS:
    """Resident-set high-water mark of this process (see module docstring)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._max = 0

    @staticmethod
    def trim() -> None:
        import contextlib
        import ctypes
        import gc

        gc.collect()
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
            ctypes.CDLL("libc.so.6").malloc_trim(0)

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def reset(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self._max = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self.rss())
            time.sleep(0.002)

    def peak_so_far(self) -> int:
        return self._max if self._thread is not None else self._hwm()

    def _hwm(self) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/self/status")

    def peak(self) -> int:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            return self._max
        return self._hwm()


def _fixed_order(lengths: list[int], batch: int, seed: int, steps: int) -> list[int]:
    """Indices for the dry run: the sampler's first (longest) batch, its next `steps - 1` batches, and the longest
    batch once more. The last step is the steady-state peak: optimizer states exist and the heap has already served
    batches of several shapes (glibc keeps freed blocks of other sizes, so a CPU process's RSS creeps up over the
    first steps of an epoch and a fresh process at the longest batch would read low)."""
    from tuneforge.training.sampler import SeededLengthGroupedSampler

    order = list(SeededLengthGroupedSampler(lengths, batch, seed))
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    rest = batches[1:] or batches
    middle: list[list[int]] = []
    while len(middle) < steps - 1:
        middle += rest[: steps - 1 - len(middle)]
    return [i for b in [batches[0], *middle, batches[0]] for i in b]


def _child(job_dir: Path) -> None:
    import torch
    from datasets import load_from_disk
    from rich.console import Console
    from transformers import TrainerCallback, set_seed

    from tuneforge.config import load_config
    from tuneforge.methods import METHODS
    from tuneforge.models.loading import load_tokenizer, resolve_model_path
    from tuneforge.tasks import TASKS
    from tuneforge.training import fast_path
    from tuneforge.training.trainer import build_trainer

    job = json.loads((job_dir / "job.json").read_text())
    batch, steps, warmup, mode = job["batch"], job["steps"], job["warmup"], job["mode"]
    cfg = load_config(job_dir / "config.yaml")
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    set_seed(cfg.training.seed)
    total = warmup + steps
    # One optimizer step per micro-batch, no evaluation or checkpoints: only the training step is measured.
    run_cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={
        "batch_size": batch, "gradient_accumulation_steps": 1, "max_steps": total, "eval_steps": None,
        "early_stopping": cfg.training.early_stopping.model_copy(update={"patience": None})})})
    model_path = resolve_model_path(cfg.model, cfg.output_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code, cfg.model.revision)
    task = TASKS.get(cfg.task.name)(cfg.task)
    method = METHODS.get(cfg.method.name)(cfg.method)
    task.prepare_tokenizer(tokenizer)
    train_ds = load_from_disk(str(job_dir / "train"))
    cuda = torch.cuda.is_available() and cfg.training.device in ("auto", "cuda")
    fast = fast_path.plan(run_cfg, task, method, model_path)

    probe = _PeakRSS()
    probe.trim()
    base = torch.cuda.memory_allocated() if cuda else probe.rss()
    revision = {"revision": cfg.model.revision} if cfg.model.revision else {}
    model = task.build_model(model_path, job["labels"], pad_token_id=tokenizer.pad_token_id,
                             trust_remote_code=cfg.model.trust_remote_code, **revision, **method.load_kwargs(),
                             **fast.load_kwargs())
    model = fast_path.apply_before_method(model, fast)
    model = method.apply(model, task.head_info(model))
    model = fast_path.apply_after_method(model, fast, batch * cfg.data.max_length)
    collator, spec = task.collator(tokenizer), task.trainer_spec(run_cfg)
    if fast.enabled:
        collator.pad_to = fast.bucket
        spec.args_extra.update(bf16=True, activation_checkpointing=fast.gradient_checkpointing
                               or cfg.training.gradient_checkpointing)
    tokens: list[int] = []

    def collate(features: list[dict[str, Any]]) -> Any:
        out = collator(features)
        tokens.append(int(out["input_ids"].numel()))
        return out

    ends: list[float] = []
    marks: list[int] = []

    class Probe(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter() - self.start)
            if not cuda:  # running high-water mark: at which step the peak was reached (diagnostics)
                marks.append(probe.peak_so_far() - base)
            control.should_save = control.should_evaluate = False
            return control

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            control.should_save = control.should_evaluate = False
            return control

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        probe.reset()
    trainer, _, stop = build_trainer(run_cfg, model, tokenizer, train_ds, train_ds.select(range(min(4, len(train_ds)))),
                                     collate, None, "loss", job_dir / "checkpoints", Console(quiet=True), quiet=True,
                                     loss_only=True, trainer_options=task.trainer_options(), spec=spec,
                                     extra_callbacks=[Probe()])
    if mode == "dry":
        order = _fixed_order([len(x) for x in train_ds["input_ids"]], batch, cfg.training.seed, steps)
        trainer._get_train_sampler = lambda *a, **k: order  # type: ignore[method-assign]
    try:
        trainer.train()
    finally:
        stop.restore_handlers()
    peak = (torch.cuda.max_memory_allocated() if cuda else probe.peak()) - base
    durations = [b - a for a, b in itertools.pairwise(ends)]
    samples = [(tokens[i], durations[i - 1]) for i in range(max(warmup, 1), len(ends))]
    (job_dir / "result.json").write_text(json.dumps({
        "peak_bytes": peak, "samples": samples, "tokens": tokens[:len(ends)], "ends": ends,
        "device": "cuda" if cuda else "cpu", "peak_by_step": marks}))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
