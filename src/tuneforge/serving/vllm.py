"""`--engine vllm`: the `vllm serve` command for a workspace's generative runs (GPU machines).

vLLM serves one base model per process. LoRA runs are PEFT folders (`adapter_config.json` +
`adapter_model.safetensors` in RUN/model), which vLLM reads as they are, so the layout is the run folders
themselves: `--lora-modules NAME=RUN/model` for each. A single full fine-tune is served on its own as
`vllm serve RUN/model`. Other methods (DoRA, IA3, prompt tuning, bottleneck adapters) have no vLLM loader.
"""

from __future__ import annotations

from tuneforge.errors import RunError
from tuneforge.registry.loaded_run import LoadedRun

# Ranks vLLM's --max-lora-rank accepts.
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
VLLM_METHODS = ("lora", "qlora")


def vllm_command(runs: list[LoadedRun], *, host: str = "127.0.0.1", port: int = 8000,
                 max_loras: int = 8) -> list[str]:
    generative = [r for r in runs if r.generative]
    if not generative:
        raise RunError("no generative (sft, preference, rlhf, distillation) run to serve with vLLM",
                       fix="train one, or use --engine transformers for classification and embeddings")
    full = [r for r in generative if not r.is_adapter]
    adapters = [r for r in generative if r.is_adapter]
    tail = ["--host", host, "--port", str(port)]
    if full:
        if len(generative) > 1:
            raise RunError(f"vLLM serves one base per process; {full[0].name} is a full fine-tune next to "
                           f"{len(generative) - 1} other run(s)", fix=f"serve it alone: tuneforge serve {full[0].name} "
                                                                      "--engine vllm")
        run = full[0]
        return ["vllm", "serve", str(run.model_dir), "--served-model-name", run.name, *tail]
    unsupported = [f"{r.name} ({r.method.name})" for r in adapters if r.method.name not in VLLM_METHODS]
    if unsupported:
        raise RunError(f"vLLM loads LoRA adapters only; not {', '.join(unsupported)}",
                       fix="serve these runs with --engine transformers")
    bases = {(r.base_model_path, r.base_revision) for r in adapters}
    if len(bases) > 1:
        raise RunError(f"the adapter runs use {len(bases)} different bases; vLLM serves one per process",
                       fix="pass the runs of one base (tuneforge serve RUN ... --engine vllm), one server per base")
    base, revision = bases.pop()
    rank = max(int(getattr(r.method.params, "r", 8)) for r in adapters)
    command = ["vllm", "serve", base, *(["--revision", revision] if revision else []),
               # the runs' own tokenizer carries the chat template they trained with
               "--tokenizer", str(adapters[0].model_dir), "--enable-lora",
               "--max-loras", str(max(1, min(max_loras, len(adapters)))),
               "--max-lora-rank", str(next((k for k in _LORA_RANKS if k >= rank), rank)),
               "--lora-modules", *[f"{r.name}={r.model_dir}" for r in adapters]]
    return [*command, *tail]
