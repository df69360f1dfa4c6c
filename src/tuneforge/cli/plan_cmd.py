"""`tuneforge plan CONFIG`: peak memory, time and cost before anything trains (a thin shell over the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plan(config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
         hardware: Annotated[str, typer.Option("--hardware", help="local (what training here would use), cpu, "
                                               "a100-40gb, a100-80gb, h100-80gb, h200, l4, rtx4090.")] = "local",
         devices: Annotated[int, typer.Option("--devices", help="Devices, data parallel.")] = 1,
         price_per_hour: Annotated[float | None, typer.Option("--price-per-hour",
                                                              help="Price per device-hour (default: the "
                                                                   "profile's indicative price).")] = None,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Run a few real training steps here at two "
                                               "batch sizes, measure step time and peak memory, extrapolate.")]
         = False,
         steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps per batch size in the dry run "
                                            "(after 1 warm-up step).")] = 6,
         examples: Annotated[int | None, typer.Option("--examples", min=1, help="Plan for this many training rows "
                                                      "(the data's length distribution, scaled).")] = None,
         overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: "
                                                             "--set training.batch_size=8")] = None) -> None:
    """Estimate peak memory per device, time per epoch and cost of CONFIG; --dry-run measures real steps and
    proposes the largest batch that fits with the gradient accumulation that keeps the effective batch."""
    from rich.console import Console

    from tuneforge.errors import ConfigError
    from tuneforge.estimate import plan as run_plan

    console = Console()
    try:
        with console.status("planning" + (" (dry run: training a few steps at two batch sizes)" if dry_run else "")):
            result = run_plan(config, hardware=hardware, devices=devices, price_per_hour=price_per_hour,
                              dry_run=dry_run, dry_run_steps=steps, overrides=list(overrides or []),
                              examples=examples)
    except ConfigError as exc:
        partial = getattr(exc, "plan", None)
        if partial is not None:  # the numbers that show why it does not fit, then the one-line error
            console.print(partial.table())
        raise
    console.print(result.table())
    for note in result.notes:
        console.print(f"[dim]- {note}[/dim]", highlight=False)
    if result.proposed_batch and (result.proposed_batch, result.proposed_accum) != (result.batch_size,
                                                                                      result.grad_accum):
        console.print(f"proposed: --set training.batch_size={result.proposed_batch} "
                      f"--set training.gradient_accumulation_steps={result.proposed_accum}", highlight=False)
