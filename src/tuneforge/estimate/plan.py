"""`plan`: peak memory and time per epoch of a run config before anything trains, for this machine or a named
hardware profile, analytically from config.json and the data, and (dry run) from real measured steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig
from tuneforge.errors import ConfigError
from tuneforge.estimate.data import DataFacts, data_facts
from tuneforge.estimate.dryrun import Measurement, measure
from tuneforge.estimate.hardware import GIB, PROFILES, Hardware, get_hardware
from tuneforge.estimate.memory import MemoryEstimate, ModelFacts, estimate_memory, largest_batch, model_facts
from tuneforge.estimate.time import (
    StepFit,
    TimeEstimate,
    analytic_time,
    epoch_batches,
    fit_steps,
    fitted_time,
)

# Peak-memory differences below this are measurement noise on CPU (resident-set pages, malloc arenas).
RSS_RESOLUTION = 2 * 2**20


@dataclass(frozen=True)
class MemoryFit:
    """Measured peak = intercept + per_sample x batch, at the epoch's longest sequence."""

    intercept: float
    per_sample: float

    def at(self, batch: int) -> float:
        return self.intercept + self.per_sample * batch

    def largest(self, budget: float, limit: int) -> int:
        if self.at(1) > budget:
            return 0
        if self.per_sample <= 0:
            return limit
        return max(1, min(limit, int((budget - self.intercept) // self.per_sample)))


@dataclass
class DryRun:
    measurements: list[Measurement]
    memory: MemoryFit
    steps: StepFit
    time: TimeEstimate
    largest_batch: int


@dataclass
class PlanResult:
    config_name: str
    hardware: Hardware
    devices: int
    price_per_hour: float | None
    model: ModelFacts
    data: DataFacts
    batch_size: int
    grad_accum: int
    epochs: float
    max_steps: int | None
    checkpointing: bool
    seq_len: int  # the longest training row: every epoch's first batch is padded to it
    budget_bytes: float
    memory: MemoryEstimate  # at the configured batch and checkpointing
    memory_other: MemoryEstimate  # the same with checkpointing switched the other way
    time: TimeEstimate  # analytic, configured settings
    time_other: TimeEstimate  # analytic, checkpointing switched
    largest_batch: int  # analytic, configured checkpointing
    largest_batch_other: int
    proposed_batch: int
    proposed_accum: int
    proposed_checkpointing: bool
    dry_run: DryRun | None = None
    notes: list[str] = field(default_factory=list)
    fits_on: list[str] = field(default_factory=list)  # profiles where batch 1 fits, when it does not fit here

    # ---- headline numbers: the dry run's when there is one -------------------------------------------------
    @property
    def peak_bytes(self) -> float:
        return self.dry_run.memory.at(self.batch_size) if self.dry_run else self.memory.total

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes

    @property
    def epoch_seconds(self) -> float:
        return (self.dry_run.time if self.dry_run else self.time).seconds_per_epoch

    @property
    def total_seconds(self) -> float:
        return self._total(self.dry_run.time if self.dry_run else self.time)

    @property
    def cost(self) -> float | None:
        price = self.price_per_hour if self.price_per_hour is not None else self.hardware.price_per_hour
        return None if price is None else price * self.devices * self.total_seconds / 3600

    def rows(self) -> list[dict[str, str]]:
        """(quantity, analytic, dry run) rows: what `tuneforge plan` prints."""
        m, o, f, d = self.memory, self.memory_other, self.model, self.dry_run
        ck = "with" if self.checkpointing else "without"
        other = "without" if self.checkpointing else "with"
        rows = [
            ("model", f"{f.model_type}, {f.total_params / 1e6:,.1f}M parameters, {f.trainable_params / 1e6:,.2f}M "
                      f"trainable ({100 * f.trainable_fraction:.2f}%)", ""),
            ("data", f"{self.data.rows:,} training rows, {self.data.mean_len:.0f} tokens mean, {self.data.max_len} "
                     f"longest ({self.data.source})", ""),
            ("hardware", f"{self.devices} x {self.hardware.description}, {_gib(self.budget_bytes)} usable per device",
             ""),
            ("micro-batch x accumulation", f"{self.batch_size} x {self.grad_accum} (x {self.devices} devices), "
                                           f"longest row {self.seq_len} tokens", ""),
            ("weights", _gib(m.weights), ""), ("gradients", _gib(m.gradients), ""),
            ("AdamW states", _gib(m.optimizer), ""),
            (f"activations ({ck} checkpointing)", _gib(m.activations + m.logits), ""),
            (f"activations ({other} checkpointing)", _gib(o.activations + o.logits), ""),
            ("peak memory per device", f"{_gib(m.total)} ({ck} checkpointing)",
             f"{_gib(d.memory.at(self.batch_size))} ({_gib(d.memory.intercept)} + {d.memory.per_sample / 2**20:,.1f}"
             f" MiB x batch)" if d else ""),
            ("fits", "yes" if m.total <= self.budget_bytes else "NO",
             ("yes" if self.fits else "NO") if d else ""),
            ("largest micro-batch that fits", f"{self._n(self.largest_batch)} ({ck} ckpt), "
                                              f"{self._n(self.largest_batch_other)} ({other} ckpt)",
             self._n(d.largest_batch) if d else ""),
            ("proposed", f"batch_size {self.proposed_batch}, gradient_accumulation_steps {self.proposed_accum}"
                         f"{', gradient_checkpointing' if self.proposed_checkpointing else ''}", ""),
            ("FLOPs per token", f"{self.time.flops_per_token / 1e9:,.2f} GFLOP", ""),
            ("time per optimizer step", _duration(self.time.seconds_per_step),
             _duration(d.time.seconds_per_step) if d else ""),
            ("time per epoch", f"{_duration(self.time.seconds_per_epoch)} ({ck} ckpt, MFU {self.time.mfu:.0%}), "
                               f"{_duration(self.time_other.seconds_per_epoch)} ({other})",
             _duration(d.time.seconds_per_epoch) if d else ""),
            ("total training time", _duration(self._total(self.time)), _duration(self._total(d.time)) if d else ""),
        ]
        if self.cost is not None:
            price = self.price_per_hour if self.price_per_hour is not None else self.hardware.price_per_hour
            rows.append(("cost", f"${self._cost(self.time):,.2f} at ${price:.2f}/device-hour",
                         f"${self._cost(d.time):,.2f}" if d else ""))
        return [{"quantity": q, "analytic": a, "dry_run": r} for q, a, r in rows]

    def _n(self, batch: int) -> str:
        return f"{batch} (all rows)" if batch >= self.data.rows else str(batch)  # the search stops at the data

    def _total(self, t: TimeEstimate) -> float:
        return self.max_steps * t.seconds_per_step if self.max_steps else self.epochs * t.seconds_per_epoch

    def _cost(self, t: TimeEstimate) -> float:
        price = self.price_per_hour if self.price_per_hour is not None else self.hardware.price_per_hour
        return (price or 0.0) * self.devices * self._total(t) / 3600

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"plan: {self.config_name} on {self.devices} x {self.hardware.name}")
        table.add_column("quantity")
        table.add_column("analytic (config.json + data)")
        if self.dry_run:
            table.add_column("dry run (measured here)")
        for row in self.rows():
            table.add_row(row["quantity"], row["analytic"], *([row["dry_run"]] if self.dry_run else []))
        return table


def _gib(n: float) -> str:
    return f"{n / GIB:,.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:,.1f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _model_dir(cfg: RunConfig) -> str:
    """A folder with config.json is enough to plan (weights are only needed for a dry run)."""
    from tuneforge.models.loading import default_model_path, resolve_model_path

    if cfg.model.path == "default":
        return str(default_model_path())
    path = Path(cfg.model.path).expanduser()
    if (path / "config.json").is_file():
        return str(path.resolve())
    return resolve_model_path(cfg.model, cfg.output_dir)  # names the problem (missing folder, hub id without allow_hub)


def _check_compatible(cfg: RunConfig, task: Any, method: Any, f: ModelFacts | None = None) -> None:
    """The config combinations `train` rejects before loading, minus the checks about *this* machine."""
    from tuneforge.training.builder import check_method_task

    check_method_task(cfg, task, method)
    if f is not None and f.max_positions and cfg.data.max_length + f.virtual_tokens > f.max_positions:
        raise ConfigError(f"{cfg.data.max_length} (+{f.virtual_tokens} virtual tokens) exceeds the model's "
                          f"{f.max_positions} positions", key="data.max_length",
                          fix=f"set data.max_length to at most {f.max_positions - f.virtual_tokens}")


def _propose(effective: int, largest: int) -> tuple[int, int]:
    """Largest micro-batch <= largest that divides the effective batch, and the accumulation that keeps it."""
    if largest >= effective:
        return effective, 1
    divisor = max(d for d in range(1, largest + 1) if effective % d == 0)
    if divisor * 2 >= largest:
        return divisor, effective // divisor
    return largest, max(1, round(effective / largest))  # an awkward effective batch: keep it approximately


def plan(config: RunConfig | str | Path, hardware: str = "local", devices: int = 1,
         price_per_hour: float | None = None, dry_run: bool = False, dry_run_steps: int = 6,
         overrides: list[str] | None = None, examples: int | None = None, strict: bool = True) -> PlanResult:
    """Estimate peak memory per device and training time of a config. `strict`: raise ConfigError (with the plan
    attached as `.plan`) when the configured batch cannot fit the hardware."""
    from tuneforge.config_resolve import resolve_config
    from tuneforge.methods import METHODS
    from tuneforge.tasks import TASKS

    cfg = resolve_config(config, overrides)
    if devices < 1:
        raise ConfigError(f"devices must be at least 1, got {devices}", key="--devices", fix="e.g. --devices 2")
    hw = get_hardware(hardware, cfg.training.threads)
    task = TASKS.get(cfg.task.name)(cfg.task)
    method = METHODS.get(cfg.method.name)(cfg.method)
    if method.needs_cuda and hw.kind == "cpu":
        raise ConfigError(f"{method.name} needs a CUDA GPU (bitsandbytes 4-bit kernels), and {hw.name!r} is a CPU",
                          key="method.name", fix="use lora (same adapters, full-precision base) on CPU, or plan "
                                                 "for a GPU, e.g. --hardware a100-80gb")
    if dry_run and hw.kind != get_hardware("local", cfg.training.threads).kind:
        raise ConfigError(f"--dry-run measures this machine, which is not a {hw.name}", key="--hardware",
                          fix="drop --dry-run to estimate for that hardware, or plan for --hardware local")
    _check_compatible(cfg, task, method)
    model_dir = _model_dir(cfg)
    data = data_facts(cfg, task, model_dir, examples)
    f = model_facts(model_dir, task, method, len(data.labels), cfg.model.trust_remote_code)
    _check_compatible(cfg, task, method, f)
    if f.trainable_params == 0:
        raise ConfigError(f"method {method.name!r} leaves nothing to train for task {task.name!r}",
                          key="method.name", fix="use full, lora, dora, ia3 or adapter")

    t = cfg.training
    ckpt, precision, seq = t.gradient_checkpointing, t.precision, data.max_len
    # The rate a step runs at: the bf16 peak when training computes in 16 bits on a GPU (autocast or 16-bit weights).
    half = hw.kind == "cuda" and (precision in ("bf16", "fp16") or f.half_precision_weights
                                  or (precision == "auto" and hw.bf16))
    budget = hw.usable_bytes()
    mem = {c: estimate_memory(f, t.batch_size, seq, hw, c, precision, data.packed) for c in (False, True)}
    fit = {c: largest_batch(f, seq, hw, c, budget, precision, data.packed, limit=max(data.rows, 1))
           for c in (False, True)}
    batches = epoch_batches(data.lengths, t.batch_size, t.seed, t.group_by_length, f.virtual_tokens)
    times = {c: analytic_time(f, batches, hw, devices, t.gradient_accumulation_steps, c, half) for c in (False, True)}
    notes = list(data.notes) + _assumptions(hw, devices, f)

    dry = _dry_run(cfg, task, data, f, hw, devices, budget, fit[ckpt], dry_run_steps) if dry_run else None
    largest, use_ckpt = (dry.largest_batch if dry else fit[ckpt]), ckpt
    if largest == 0 and not ckpt and fit[True] > 0:
        largest, use_ckpt = fit[True], True  # checkpointing is what makes it fit at all
    effective = t.batch_size * t.gradient_accumulation_steps
    proposed, accum = _propose(effective, largest) if largest else (0, 0)
    fits_on = [] if largest else [p.name for p in PROFILES.values() if p.memory_gib > hw.memory_gib and
                                  estimate_memory(f, 1, seq, p, True, precision, data.packed).total <= p.usable_bytes()]
    result = PlanResult(cfg.name, hw, devices, price_per_hour, f, data, t.batch_size, t.gradient_accumulation_steps,
                        t.epochs, t.max_steps, ckpt, seq + f.virtual_tokens, budget, mem[ckpt], mem[not ckpt],
                        times[ckpt], times[not ckpt], fit[ckpt], fit[not ckpt], proposed, accum, use_ckpt, dry, notes,
                        fits_on)
    if strict and not result.fits:
        _raise_does_not_fit(result, method.name)
    return result


def _assumptions(hw: Hardware, devices: int, f: ModelFacts) -> list[str]:
    from tuneforge.estimate.time import MFU

    peak = "the datasheet bf16" if hw.bf16 else ("the measured fp32 matmul" if hw.detected else "the datasheet fp32")
    out = [f"time: training steps only (no evaluation, baselines or checkpoint writes); without a dry run, MFU "
           f"{MFU[hw.kind]:.0%} of {peak} peak",
           "memory: peak of a steady-state step on the epoch's longest batch (the sampler puts it first); CUDA "
           "numbers are allocated tensors, the usable budget leaves ~1 GiB + 5% for the CUDA context and "
           "fragmentation; CPU numbers are resident-set growth, the budget is 85% of RAM"]
    if devices > 1:
        out.append(f"devices: data parallel over {devices} devices (a full copy per device, so memory per device "
                   "does not shrink), 90% scaling efficiency")
    if f.half_precision_weights:
        out.append("weights: loaded in the checkpoint's 16-bit dtype (transformers' dtype='auto'), as train does")
    return out


def _dry_run(cfg: RunConfig, task: Any, data: DataFacts, f: ModelFacts, hw: Hardware, devices: int,
             budget: float, analytic_largest: int, steps: int) -> DryRun:
    if not task.supports_dry_run:
        from tuneforge.tasks import TASKS

        supported = ", ".join(t.name for t in TASKS if t.supports_dry_run)
        raise ConfigError(f"--dry-run supports the {supported} tasks, not {task.name}",
                          key="task.name", fix="drop --dry-run for the analytic estimate")
    if data.train_dataset is None:
        raise ConfigError("--dry-run trains on the real data with the model's tokenizer and weights, which this "
                          "config does not have (or --examples rescaled it)", key="data.train",
                          fix="drop --dry-run (or --examples), or point model.path at a folder with weights")
    from tuneforge.models.loading import resolve_model_path

    resolve_model_path(cfg.model, cfg.output_dir)  # a folder without weights stops here with its own message
    t = cfg.training
    rows = data.rows
    high = max(1, min(t.batch_size, analytic_largest or 1, rows))
    low = max(1, high // 2)
    if low == high:
        high = min(2, rows)
    sizes = sorted({low, high})
    measured = [measure(cfg, data.train_dataset, data.labels, b, steps) for b in sizes]
    ok = [m for m in measured if not m.out_of_memory]
    if not ok:
        raise ConfigError(f"the dry run ran out of memory even at batch {sizes[0]}", key="training.batch_size",
                          fix="enable training.gradient_checkpointing, use a smaller model or a lighter method")
    analytic = estimate_memory(f, 1, data.max_len, hw, t.gradient_checkpointing, t.precision, data.packed)
    per_sample = analytic.activations + analytic.logits
    slope = 0.0
    if len(ok) >= 2 and ok[1].batch != ok[0].batch:
        slope = (ok[1].peak_bytes - ok[0].peak_bytes) / (ok[1].batch - ok[0].batch)
    if len(ok) >= 2 and (ok[1].peak_bytes - ok[0].peak_bytes) > RSS_RESOLUTION:
        memory = MemoryFit(ok[1].peak_bytes - slope * ok[1].batch, slope)
    else:
        # One point, or a difference the measurement cannot resolve (a tiny model's activations are within a
        # resident set's page and arena noise): the analytic activations per sample, anchored at the measurements.
        anchor = sum(m.peak_bytes - per_sample * m.batch for m in ok) / len(ok)
        memory = MemoryFit(anchor, per_sample)
    step_fit = fit_steps([s for m in ok for s in m.samples])
    batches = epoch_batches(data.lengths, t.batch_size, t.seed, t.group_by_length, f.virtual_tokens)
    time = fitted_time(step_fit, f, batches, hw, devices, t.gradient_accumulation_steps)
    return DryRun(measured, memory, step_fit, time, memory.largest(budget, rows))


def _raise_does_not_fit(r: PlanResult, method: str) -> None:
    effective = r.batch_size * r.grad_accum
    need, have = _gib(r.peak_bytes), _gib(r.budget_bytes)
    where = f"{r.hardware.name} ({have} usable per device)"
    if r.proposed_batch:
        ckpt = "set training.gradient_checkpointing: true and " if r.proposed_checkpointing and not r.checkpointing \
            else ""
        kept = r.proposed_batch * r.proposed_accum
        same = f"keeps the effective batch {effective}" if kept == effective else \
            f"effective batch {kept} instead of {effective}"
        largest = r.dry_run.largest_batch if r.dry_run else r.largest_batch
        fix = (f"{ckpt}set training.batch_size: {r.proposed_batch} and training.gradient_accumulation_steps: "
               f"{r.proposed_accum} ({same}); the largest micro-batch that fits is {largest}")
        if not r.checkpointing and not r.proposed_checkpointing and r.largest_batch_other > largest:
            fix += (f", or {r.largest_batch_other} with training.gradient_checkpointing: true (one more forward "
                    "pass per step)")
    else:
        options = []
        if method != "qlora" and r.hardware.kind == "cuda" and r.model.causal_lm:
            options.append("method: qlora (4-bit base weights)")
        if r.fits_on:
            options.append(f"hardware with more memory ({', '.join(r.fits_on)})")
        options.append("a smaller model" + (" or a parameter-efficient method (lora)" if method == "full" else ""))
        fix = ("even batch 1 does not fit with gradient checkpointing: use " + ", or ".join(options)
               + "; more devices do not help, as each holds a full copy (data parallel)")
    err = ConfigError(f"batch {r.batch_size} needs {need} per device at {r.seq_len} tokens, more than the {where}",
                      key="training.batch_size", fix=fix)
    err.plan = r  # type: ignore[attr-defined]  # the CLI prints the plan table before the error
    raise err
