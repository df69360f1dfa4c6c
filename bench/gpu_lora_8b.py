"""LoRA SFT throughput of a Llama-3-8B-shaped model on one GPU: TRL SFTTrainer + PEFT with TRL's defaults (the
baseline) against tuneforge's trainer with the fast path, in the same run, on the same examples.

Model: Llama-3-8B architecture (32 layers, hidden 4096, MLP 14336, 32/8 heads, vocab 128256), random bf16 weights
(throughput does not depend on the values). Data: 2,000 examples of random token ids whose lengths are log-normal
(median 350, sigma 0.8, capped at 4,096), i.e. a realistic chat length mix. LoRA r=16 on all linear layers.

    python bench/gpu_lora_8b.py                       # on an H200/H100: both rows, then the QLoRA pair
    python bench/gpu_lora_8b.py --tiny                # a 2-layer miniature that runs anywhere (checks the script)

Tokens/s count real tokens only (no padding). MFU = tokens/s x (4N + 12 L H T) / 989e12, with N the base model's
parameters (forward 2N + backward through frozen weights 2N; LoRA's own FLOPs are <1% and left out), L layers,
H hidden size and T the token-weighted mean example length (per-example attention); 989 TFLOP/s is the H100/H200
dense bf16 peak. Writes bench/results/gpu_lora_8b.json and docs/bench/gpu_lora_8b.md.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from _common import ROOT, machine, markdown_table, print_table, save

PEAK_FLOPS = 989e12


def lengths(n: int, seed: int, cap: int) -> list[int]:
    import random

    rng = random.Random(seed)
    return [max(16, min(cap, int(rng.lognormvariate(math.log(350), 0.8)))) for _ in range(n)]


def llama_config(tiny: bool) -> Any:
    from transformers import LlamaConfig

    if tiny:
        return LlamaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=128, max_position_embeddings=4096)
    return LlamaConfig(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, intermediate_size=14336, max_position_embeddings=8192,
                       rope_theta=500000.0)


class StepClock:
    """A TrainerCallback timing steps after `warmup` (compile and allocator warm-up excluded)."""

    def __init__(self, warmup: int) -> None:
        from transformers import TrainerCallback

        clock = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step == warmup:
                    _sync()
                    clock.start = time.perf_counter()

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                _sync()
                clock.end = time.perf_counter()

        self.callback, self.start, self.end = _Callback(), 0.0, 0.0


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(trainer: Any, clock: StepClock, tokens_per_step: float, steps: int, warmup: int) -> dict[str, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = clock.end - clock.start
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"tokens/s": tokens_per_step * (steps - warmup) / seconds, "peak GiB": peak, "s/step":
            seconds / (steps - warmup)}


def baseline(model_dir: str, rows: list[dict[str, Any]], args: argparse.Namespace, qlora: bool) -> dict[str, float]:
    """TRL SFTTrainer + PEFT, TRL's defaults (padding, gradient checkpointing on, no packing) except what must
    match: max length, batch size, steps, LoRA."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    clock = StepClock(args.warmup)
    cpu = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False}  # --tiny check only
    sft_args = SFTConfig(**cpu, output_dir=str(args.workdir / "trl"), max_length=args.cap,
                         per_device_train_batch_size=args.batch, max_steps=args.steps, report_to="none",
                         save_strategy="no", logging_steps=10**6,
                         model_init_kwargs={"dtype": "bfloat16" if not cpu else "float32",
                                            **(_bnb() if qlora else {})})
    trainer = SFTTrainer(model=model_dir, args=sft_args, train_dataset=Dataset.from_list(rows),
                         peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                task_type="CAUSAL_LM"), callbacks=[clock.callback])
    real = sum(len(r["input_ids"]) for r in rows) / len(rows) * args.batch  # padding is not counted
    return measure(trainer, clock, real, args.steps, args.warmup)


def tuneforge_path(model_dir: str, rows: list[dict[str, Any]], args: argparse.Namespace,
                   qlora: bool) -> dict[str, float]:
    """tuneforge's sft training path (its model loading, method, fast path, packing, collator and trainer)."""
    from datasets import Dataset

    from tuneforge.config import parse_config
    from tuneforge.data.packing import PackedCollator, pack
    from tuneforge.methods import METHODS
    from tuneforge.tasks import TASKS
    from tuneforge.training import fast_path
    from tuneforge.training.trainer import build_trainer

    method_name = "qlora" if qlora else "lora"
    cfg = parse_config({"name": "bench", "output_dir": str(args.workdir), "model": {"path": model_dir},
                        "data": {"train": "unused.jsonl", "max_length": args.cap}, "task": {"name": "sft"},
                        "method": {"name": method_name, "r": 16, "alpha": 32, "target_modules": "all-linear"},
                        "training": {"max_steps": args.steps, "batch_size": args.pack_rows, "learning_rate": 1e-4,
                                     "eval_steps": 10**6, "early_stopping": {"patience": None}},
                        "tracking": {"mlflow": False}})
    task, method = TASKS.get("sft")(cfg.task), METHODS.get(method_name)(cfg.method)
    fast = fast_path.decide(cfg, task, method, model_dir)
    print(fast.summary())
    model = task.build_model(model_dir, [], **method.load_kwargs(), **fast.load_kwargs())
    model = fast_path.apply_before_method(model, fast)
    model = method.apply(model, task.head_info(model))
    model = fast_path.apply_after_method(model, fast, args.pack_rows * args.cap)
    packed = pack([{"input_ids": r["input_ids"], "labels": r["input_ids"]} for r in rows], args.cap)
    collator = PackedCollator(0, pad_to=fast.bucket)
    spec = task.trainer_spec(cfg)
    spec.args_extra.update(eval_strategy="no", save_strategy="no", load_best_model_at_end=False)  # throughput only
    if fast.enabled:
        spec.args_extra.update(bf16=True, activation_checkpointing=fast.gradient_checkpointing)
    clock = StepClock(args.warmup)
    from rich.console import Console

    trainer, _, _ = build_trainer(cfg, model, None, Dataset.from_list(packed), None, collator, None, "loss",
                                  args.workdir / "tuneforge", Console(), quiet=True, loss_only=True, spec=spec)
    trainer.add_callback(clock.callback)
    real = sum(len(r["input_ids"]) for r in rows) / len(packed) * args.pack_rows  # real tokens per packed step
    return measure(trainer, clock, real, args.steps, args.warmup)


def write_tokenizer(model_dir: Any, vocab_size: int) -> None:
    """A word-level tokenizer covering every id (the data is already token ids; TRL still wants one to load)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(model_dir))


def _bnb() -> dict[str, Any]:
    import torch
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_compute_dtype=torch.bfloat16)}


def main() -> None:
    from pathlib import Path

    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="2-layer miniature: checks the script anywhere")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--cap", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=8, help="baseline examples per step (TRL's default)")
    parser.add_argument("--pack-rows", type=int, default=1, help="tuneforge packed rows of --cap tokens per step")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-qlora", action="store_true")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "results" / "gpu_lora_8b")
    args = parser.parse_args()
    import torch
    from transformers import LlamaForCausalLM

    if not torch.cuda.is_available() and not args.tiny:
        raise SystemExit("this benchmark needs a CUDA GPU (use --tiny to check the script on CPU)")
    if args.tiny:
        args.examples, args.cap, args.steps, args.warmup, args.no_qlora = 64, 512, 4, 1, True
    config = llama_config(args.tiny)
    model_dir = args.workdir / ("tiny-llama" if args.tiny else "llama3-8b-random")
    if not (model_dir / "config.json").is_file():  # written once: 16 GB of random bf16 weights
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(str(model_dir))
        write_tokenizer(model_dir, config.vocab_size)
    import random

    rng = random.Random(1)
    rows = [{"input_ids": [rng.randrange(3, config.vocab_size) for _ in range(n)]}
            for n in lengths(args.examples, 0, args.cap)]
    n_params = sum(p.numel() for p in LlamaForCausalLM(config).parameters()) if args.tiny else 8_030_261_248
    t_mean = sum(len(r["input_ids"]) ** 2 for r in rows) / sum(len(r["input_ids"]) for r in rows)
    flops_per_token = 4 * n_params + 12 * config.num_hidden_layers * config.hidden_size * t_mean
    results = []
    for qlora in ([False] if args.no_qlora else [False, True]):
        kind = "QLoRA" if qlora else "LoRA"
        for name, run in (("TRL SFTTrainer + PEFT (defaults)", baseline), ("tuneforge (fast path)", tuneforge_path)):
            r = run(str(model_dir), rows, args, qlora)
            results.append({"setup": f"{kind}: {name}", **r, "MFU %": 100 * r["tokens/s"] * flops_per_token
                            / PEAK_FLOPS})
        base, ours = results[-2], results[-1]
        ours["x baseline tokens/s"] = ours["tokens/s"] / base["tokens/s"]
        ours["x baseline memory"] = ours["peak GiB"] / base["peak GiB"] if base["peak GiB"] == base["peak GiB"] \
            else float("nan")
    columns = ["setup", "tokens/s", "s/step", "peak GiB", "MFU %", "x baseline tokens/s", "x baseline memory"]
    print_table("LoRA SFT, Llama-3-8B shape" + (" (tiny check)" if args.tiny else ""), results, columns)
    meta = {"machine": machine(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "flops_per_token": flops_per_token, "mean_example_tokens": sum(len(r["input_ids"]) for r in rows)
            / len(rows), "args": {k: str(v) for k, v in vars(args).items()}}
    save("gpu_lora_8b" + ("_tiny" if args.tiny else ""), results, meta)
    if not args.tiny:
        (ROOT / "docs" / "bench" / "gpu_lora_8b.md").write_text(
            f"# LoRA SFT throughput, Llama-3-8B shape ({meta['gpu']})\n\n`python bench/gpu_lora_8b.py`; MFU = "
            "tokens/s x (4N + 12 L H T) / 989e12, N = 8.03e9, L = 32, H = 4096, T = token-weighted mean example "
            f"length ({t_mean:.0f}).\n\n" + markdown_table(results, columns) + "\n")


if __name__ == "__main__":
    main()
