"""`tuneforge generate` and `tuneforge chat`: use an sft run with the chat template saved in it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tuneforge.errors import RunError

console = Console()

MaxTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest reply in tokens.")]
Temperature = Annotated[float, typer.Option("--temperature", min=0.0, help="0: greedy (deterministic).")]


def _generative_run(run: Path) -> Any:
    from tuneforge.registry.loaded_run import load_run

    loaded = load_run(run)
    if not loaded.generative:
        raise RunError(f"{run} is a {loaded.task.name} run, not a generative one",
                       fix=f'use `tuneforge predict {run} "text"`')
    return loaded


def generate(run: Annotated[Path, typer.Argument(help="Run folder of an sft run.")],
             prompt: Annotated[str, typer.Option("--prompt", help="The user message.")],
             system: Annotated[str | None, typer.Option("--system", help="Optional system message.")] = None,
             max_new_tokens: MaxTokens = 256, temperature: Temperature = 0.0) -> None:
    """Generate one reply to a prompt."""
    loaded = _generative_run(run)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    print(loaded.generate(messages, max_new_tokens=max_new_tokens, temperature=temperature)[0])


def chat(run: Annotated[Path, typer.Argument(help="Run folder of an sft run.")],
         system: Annotated[str | None, typer.Option("--system", help="Optional system message.")] = None,
         max_new_tokens: MaxTokens = 256, temperature: Temperature = 0.0) -> None:
    """Interactive chat, streaming tokens; /reset clears the history, /exit (or Ctrl-D) leaves."""
    loaded = _generative_run(run)
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    interactive = sys.stdin.isatty()
    if interactive:
        console.print("[dim]chatting with the tuned model; /reset clears the history, /exit leaves[/dim]")
    while True:
        if interactive:
            console.print("[bold]you>[/bold] ", end="")
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            break
        if line.strip() == "/reset":
            messages = list(start)
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.strip()})
        sys.stdout.write("assistant> " if interactive else "")
        reply = ""
        for piece in loaded.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature):
            sys.stdout.write(piece)
            sys.stdout.flush()
            reply += piece
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": reply.strip()})
