"""Analytic peak memory of a training step, from the model's config.json alone (no weights are read).

The model is built on the meta device with the task's model class and the method is applied to it, so parameter
counts, dtypes and what is trainable are exactly what training would have. Activations follow Korthikanti et al.
2022 ("Reducing Activation Recomputation in Large Transformer Models"), counted in elements per token per layer and
checked against the tensors autograd really saves (saved_tensors_hooks) for BERT and Llama in this transformers
version; see docs/plan.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tuneforge.errors import ConfigError

# bytes per parameter of a 4-bit (NF4/FP4) weight: 0.5 + one absmax per 64 weights, itself quantised to 8 bits
# with an fp32 constant per 256 blocks when double quantisation is on (Dettmers et al. 2023, section 3).
QLORA_BYTES = {True: 0.5 + (1 + 4 / 256) / 64, False: 0.5 + 4 / 64}
# RSS a CPU training process adds on top of its tensors: Trainer/accelerate state, data loader, autograd engine,
# malloc arenas. Measured with the dry run on a 250k-parameter BERT: 21-23 MiB at batch 1 and 2 (docs/plan.md).
CPU_RUNTIME_OVERHEAD = 24 * 2**20
AUTO_CLASSES = {"SEQ_CLS": "AutoModelForSequenceClassification", "TOKEN_CLS": "AutoModelForTokenClassification",
                "CAUSAL_LM": "AutoModelForCausalLM"}


@dataclass(frozen=True)
class ModelFacts:
    """What the estimates need to know about the model the method produces."""

    model_type: str
    causal_lm: bool
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    gated_mlp: bool  # SwiGLU-style MLP (gate and up projections)
    attention_dropout: float
    max_positions: int | None
    total_params: int
    trainable_params: int
    frozen_bytes: float  # as loaded: qlora's quantised linears at ~4.1 bits
    trainable_bytes: float
    matmul_params: int  # weights multiplied per token (linears and the output projection, not embedding lookups)
    trainable_matmul_params: int
    backprop_backbone: bool  # False when only a head on top trains: no backward through the layers
    adapter_dropout_features: int  # summed inputs of adapters with dropout (dropout output + mask are saved)
    virtual_tokens: int  # prompt tuning: tokens prepended to every sequence
    half_precision_weights: bool

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / max(self.total_params, 1)


@contextlib.contextmanager
def hf_logging_quiet() -> Iterator[None]:
    """transformers' load reports and deprecation warnings are noise while planning."""
    import warnings

    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():  # PEFT calls transformers APIs deprecated in v5 (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(before)


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def model_facts(model_dir: str, task: Any, method: Any, num_labels: int, trust_remote_code: bool = False
                ) -> ModelFacts:
    """Build the task's model on the meta device from config.json, apply the method, and count."""
    import transformers
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    causal = task.peft_task_type == "CAUSAL_LM"
    if not causal:
        config.num_labels = max(num_labels, 1)
    auto = getattr(transformers, AUTO_CLASSES.get(task.peft_task_type, "AutoModelForCausalLM"))
    qlora = method.quantized_base
    with hf_logging_quiet(), init_empty_weights():
        model = auto.from_config(config, trust_remote_code=trust_remote_code)
        if method.compute_dtype():  # the non-quantised parts load in the compute dtype
            import torch

            model = model.to(getattr(torch, method.compute_dtype()))
        head = task.head_info(model)
        try:
            model = method.apply_for_counting(model, head)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"cannot apply method {method.name!r}: {str(exc).splitlines()[0]}", key="method",
                              fix="check the method's settings (e.g. target_modules) against the model") from None
    return _count(model, config, causal, head, qlora, method)


def _count(model: Any, config: Any, causal: bool, head: Any, qlora: bool, method: Any) -> ModelFacts:
    import torch

    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    skip = {id(p) for p in out_emb.parameters()} if out_emb is not None else set()
    matmul, trainable_matmul, quantised = 0, 0, set()
    for name, module in model.named_modules():
        kind = type(module).__name__
        if (isinstance(module, torch.nn.Linear) or kind == "Conv1D") and hasattr(module, "weight"):
            n = module.weight.numel()
            matmul += n
            trainable_matmul += n if module.weight.requires_grad else 0
            top = name.split(".")[0]
            # bitsandbytes quantises every linear except the output projection and a task head.
            if qlora and id(module.weight) not in skip and top not in head.head_modules and "lora_" not in name:
                quantised.add(id(module.weight))
    frozen = trainable = 0.0
    n_total = n_train = 0
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n_total += p.numel()
        if p.requires_grad:
            n_train += p.numel()
            trainable += p.numel() * p.element_size()
        elif id(p) in quantised:
            frozen += p.numel() * QLORA_BYTES[method.params.double_quant]
        else:
            frozen += p.numel() * p.element_size()
    head_names = set(head.head_modules) | ({n for n, m in model.named_children() if m is out_emb} if causal else set())
    backbone = any(p.requires_grad for n, p in model.named_parameters()
                   if not any(part in head_names for part in n.split(".")[:3]))
    dropout_features = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if (isinstance(drops, torch.nn.ModuleDict) and hasattr(module, "in_features")
                and any(isinstance(d, torch.nn.Dropout) and d.p > 0 for d in drops.values())):
            dropout_features += int(module.in_features)
    hidden = int(_get(config, "hidden_size", "n_embd", "d_model"))
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    half = any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    return ModelFacts(
        model_type=str(getattr(config, "model_type", "")), causal_lm=causal,
        layers=int(_get(config, "num_hidden_layers", "n_layer", "num_layers")), hidden=hidden,
        intermediate=int(_get(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden) or 4 * hidden),
        heads=int(_get(config, "num_attention_heads", "n_head")), vocab=int(_get(config, "vocab_size", default=0)),
        gated_mlp=bool(names & {"gate_proj", "gate_up_proj"}),
        attention_dropout=float(_get(config, "attention_probs_dropout_prob", "attention_dropout", "attn_pdrop",
                                     default=0.0)),
        max_positions=_get(config, "max_position_embeddings", "n_positions"),
        total_params=n_total, trainable_params=n_train, frozen_bytes=frozen, trainable_bytes=trainable,
        matmul_params=matmul, trainable_matmul_params=trainable_matmul, backprop_backbone=backbone,
        adapter_dropout_features=dropout_features,
        virtual_tokens=int(getattr(method.params, "num_virtual_tokens", 0)) if method.prepends_virtual_tokens else 0,
        half_precision_weights=half)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device at the peak of a training step (steady state: optimizer states already allocated)."""

    weights: float
    gradients: float
    optimizer: float
    activations: float  # saved for backward (+ one layer's working set)
    logits: float  # output logits, their fp32 log-softmax and its gradient (causal LMs)
    overhead: float
    batch: int
    seq_len: int
    checkpointing: bool

    @property
    def total(self) -> float:
        # Everything at once. Gradients are freed after each step (zero_grad(set_to_none)) and grow while backward
        # frees activations, so on a caching GPU allocator this is an upper bound; a CPU process's resident set was
        # measured to hold them together (freed activation pages are not all back with the OS when gradients land).
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.overhead


def activation_bytes_per_token(f: ModelFacts, seq_len: int, act_bytes: int, cuda: bool, checkpointing: bool,
                               packed: bool = False) -> float:
    """Bytes autograd keeps per token of a micro-batch, for sequences padded to seq_len.

    Per layer, in elements per token (measured with saved_tensors_hooks on BERT and Llama, transformers 5):
    SwiGLU decoders keep ~11h + 4i (norm inputs/outputs, q/k/v with k/v expanded to all heads, attention output,
    gate/up/activation/product), GELU encoders ~10h + 2i (their dropout masks are kept as floats). Attention
    probabilities (3 x heads x seq: scores, dropout mask, dropout output) are only kept when SDPA falls back to its
    math kernel: on CPU with attention dropout. A fused kernel instead keeps the expanded padding mask (seq).
    Gradient checkpointing keeps each layer's input (h) and recomputes one layer at a time during backward. Backward
    through a layer allocates its gradients next to what is still saved: one more layer's worth at the peak. LoRA
    keeps each adapted input after dropout (activation dtype) and the dropout mask (bool)."""
    h, i, L = f.hidden, f.intermediate, f.layers
    per_layer = (11 * h + 4 * i) if f.gated_mlp else (10 * h + 2 * i)
    fused = cuda or f.attention_dropout == 0
    per_layer += (0 if packed else seq_len) if fused else 3 * f.heads * seq_len
    adapters = f.adapter_dropout_features * (act_bytes + 1)  # bytes, all layers
    embeddings = 3 * h
    if not f.backprop_backbone:  # only the head trains: nothing inside the layers is kept
        return (h + per_layer) * act_bytes  # the head's input + one layer's transient working set
    if checkpointing:  # layer inputs + one layer recomputed + its gradients
        return (L * h + 2 * per_layer + embeddings) * act_bytes + adapters / max(L, 1)
    return ((L + 1) * per_layer + embeddings) * act_bytes + adapters


def logits_bytes_per_token(f: ModelFacts, act_bytes: int) -> float:
    """Causal LMs: logits (activation dtype) + fp32 upcast for the loss + saved log-softmax + its gradient and the
    logits' gradient, all alive together when backward starts."""
    if not f.causal_lm:
        return 0.0
    return f.vocab * ((act_bytes if act_bytes != 4 else 0) + 16)


def estimate_memory(f: ModelFacts, batch: int, seq_len: int, hardware: Any, checkpointing: bool,
                    precision: str = "auto", packed: bool = False) -> MemoryEstimate:
    cuda = hardware.kind == "cuda"
    half = f.half_precision_weights or precision in ("bf16", "fp16") or (precision == "auto" and hardware.bf16)
    act_bytes = 2 if half else 4
    seq = seq_len + f.virtual_tokens
    tokens = batch * seq
    # AdamW keeps two moments per trainable parameter in the parameter's dtype (torch.optim.AdamW, fused or not);
    # tuneforge's Trainer keeps no separate fp32 master copy: with bf16 autocast the parameters themselves stay in
    # their loaded dtype (fp32 for PEFT adapters, which PEFT upcasts).
    return MemoryEstimate(
        weights=f.frozen_bytes + f.trainable_bytes, gradients=f.trainable_bytes, optimizer=2 * f.trainable_bytes,
        activations=tokens * activation_bytes_per_token(f, seq, act_bytes, cuda, checkpointing, packed),
        logits=tokens * logits_bytes_per_token(f, act_bytes), overhead=0.0 if cuda else CPU_RUNTIME_OVERHEAD,
        batch=batch, seq_len=seq, checkpointing=checkpointing)


def largest_batch(f: ModelFacts, seq_len: int, hardware: Any, checkpointing: bool, budget: float,
                  precision: str = "auto", packed: bool = False, limit: int = 1 << 16) -> int:
    """The largest micro-batch whose estimated peak fits in `budget` bytes (0: not even one sequence)."""
    if estimate_memory(f, 1, seq_len, hardware, checkpointing, precision, packed).total > budget:
        return 0
    lo, hi = 1, 2
    while hi <= limit and estimate_memory(f, hi, seq_len, hardware, checkpointing, precision, packed).total <= budget:
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:  # memory grows monotonically with the batch
        mid = (lo + hi) // 2
        if estimate_memory(f, mid, seq_len, hardware, checkpointing, precision, packed).total <= budget:
            lo = mid
        else:
            hi = mid
    return lo
