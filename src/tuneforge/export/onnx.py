"""`onnx`: encoder runs (classification, token classification) as an ONNX graph run by onnxruntime.

Exported with torch's TorchScript-based exporter (`dynamo=False`): the installed torch defaults to the dynamo
exporter, which needs the extra `onnxscript` package, and the TorchScript one traces these encoders exactly (max
|logit difference| ~1e-8 on the tests). Batch and sequence axes are dynamic. `--quantize int8` runs onnxruntime's
dynamic quantisation (int8 MatMul weights with one scale per output channel, int8 embedding tables, activations
quantised at run time; see INT8_SCHEMES).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from tuneforge.export._common import ExportError

ONNX_FILE = "model.onnx"
ENCODER_TASKS = ("classification", "token_classification")


def check_onnx_task(run: Any) -> None:
    if run.task.name not in ENCODER_TASKS:
        raise ExportError(f"run {run.name} is a {run.task.name} run; --to onnx exports encoder runs "
                          f"({', '.join(ENCODER_TASKS)})",
                          fix="export causal LMs with --to gguf (llama) or --to merged")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportError("--to onnx needs the onnx and onnxruntime packages",
                          fix="pip install 'tuneforge[export]'") from None


class _LogitsOnly:
    """Builds the traced module: the model's logits from plain tensors (ONNX graphs take no keyword dicts)."""

    @staticmethod
    def wrap(model: Any, names: list[str]) -> Any:
        import torch

        class LogitsOf(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(names, tensors, strict=True))).logits

        return LogitsOf().eval()


def input_names(tokenizer: Any, model: Any) -> list[str]:
    """The tokenizer's outputs the model's forward accepts (BERT: ids, mask, token types; others: ids, mask)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return [n for n in tokenizer.model_input_names if n in accepted]


def export_graph(model: Any, tokenizer: Any, path: Path, sample: list[Any], max_length: int) -> list[str]:
    import torch

    names = input_names(tokenizer, model)
    words = bool(sample) and isinstance(sample[0], list)
    enc = tokenizer(sample, is_split_into_words=words, truncation=True, max_length=max_length, padding=True,
                    return_tensors="pt")
    args = tuple(enc[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"} if words else {0: "batch"}
    wrapped = _LogitsOnly.wrap(model, names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(wrapped, args, str(path), dynamo=False, input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, do_constant_folding=True)
    model.eval()  # the exporter restores the wrapper's training flag, which reaches the model: put it back
    return names


# onnxruntime's dynamic int8 settings. Its defaults quantise every MatMul weight *and* every Gather table (the
# embeddings) with one scale per tensor. INT8_SCHEME is what export uses: one scale per output channel of each
# MatMul weight, which halved the sentence-embedding error of the default MiniLM against fp32 (0.25 -> 0.12) and
# raised its decision agreement from 91.7% to 95.6% at the same size (bench/onnx_int8_schemes.py,
# docs/bench/export_banking77.md). Keeping the embeddings float (matmul-only) did not help and costs 36 MB; 7-bit
# weights (reduce_range) doubled the error. The others stay so the benchmarks can measure them side by side.
INT8_SCHEMES: dict[str, dict[str, Any]] = {
    "onnxruntime-defaults": {},
    "per-channel": {"per_channel": True},
    "matmul-only": {"op_types_to_quantize": ["MatMul"]},
    "matmul-only-per-channel": {"op_types_to_quantize": ["MatMul"], "per_channel": True},
    "matmul-only-reduce-range": {"op_types_to_quantize": ["MatMul"], "reduce_range": True},
    "per-channel-reduce-range": {"op_types_to_quantize": ["MatMul"], "per_channel": True, "reduce_range": True},
}
INT8_SCHEME = "per-channel"


def quantize_graph(path: Path, scheme: str | None = None) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    name = scheme or INT8_SCHEME
    settings = INT8_SCHEMES[name]
    fp32 = path.with_name("model.fp32.onnx")
    path.rename(fp32)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a pre-processing suggestion on the root logger every time
    try:
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, **settings)
    finally:
        root.setLevel(level)
    fp32.unlink()
    return {"scheme": name, **settings}


def export_onnx(run: Any, out: Path, quantize: str | None, sample: list[Any]) -> dict[str, Any]:
    from tuneforge.export.merge import merged_model

    check_onnx_task(run)
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize {quantize} is not available for onnx", fix="use --quantize int8 or none")
    merged = merged_model(run)
    out.mkdir(parents=True, exist_ok=True)
    names = export_graph(merged.model, merged.tokenizer, out / ONNX_FILE, sample, run.max_length)
    scheme = quantize_graph(out / ONNX_FILE) if quantize == "int8" else None
    merged.tokenizer.save_pretrained(str(out))
    merged.model.config.save_pretrained(str(out))  # labels (id2label) travel with the graph
    return {"files": sorted(p.name for p in out.iterdir()), "format": "onnx", "inputs": names,
            "dtype": "int8 weights (dynamic)" if quantize else "float32", "exporter": "torch.onnx (dynamo=False)",
            **({"quantization": scheme} if scheme else {})}


class OnnxModel:
    """An onnxruntime session with the calling convention tasks use for torch models (`model(**enc).logits`,
    `.eval()`, `.parameters()` for the device), so the task's own evaluate/predict score the ONNX graph."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self._device_probe = torch.nn.Parameter(torch.zeros(1))

    def eval(self) -> OnnxModel:
        return self

    def parameters(self) -> Any:
        yield self._device_probe

    def __call__(self, **enc: Any) -> Any:
        from types import SimpleNamespace

        import numpy as np
        import torch

        feed = {n: np.asarray(enc[n].cpu().numpy(), dtype=np.int64) for n in self.names}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))
