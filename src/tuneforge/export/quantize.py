"""`int8`: dynamic int8 quantisation of every Linear layer, for CPU inference.

Saved as the merged fp32 safetensors folder plus a marker (`quantization.json`); the Linear layers are quantised
when the export is loaded (1.8 s for MiniLM-L6 on one shared CPU thread). Why not save the quantised modules:
torch's dynamic int8 Linear keeps its weights as packed C++ objects that only `torch.save` (a pickle) can write,
and loading a pickle runs code from the file. A folder of safetensors plus a marker loads without trusting the file;
the cost is that the disk size is the fp32 size (the report's size column shows it), while memory and speed are
int8's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from tuneforge.registry.files import read_json, write_json

MARKER = "quantization.json"


def backend() -> str:
    """torchao when installed (torch.ao.quantization is in maintenance), else torch.ao's quantize_dynamic."""
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torch.ao.quantization.quantize_dynamic"
    return "torchao.int8_dynamic_activation_int8_weight"


def quantize_linear_int8(model: Any) -> Any:
    """The model with every nn.Linear replaced by a dynamic int8 one (weights int8, activations quantised per
    batch at run time); embeddings and norms stay fp32."""
    import torch

    if backend().startswith("torchao"):
        from torchao.quantization import int8_dynamic_activation_int8_weight, quantize_

        quantize_(model, int8_dynamic_activation_int8_weight())
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice; the API is still the supported one here
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def export_int8(run: Any, out: Path) -> dict[str, Any]:
    from tuneforge.export.merge import export_merged

    info = export_merged(run, out)
    scheme = {"scheme": "dynamic", "dtype": "qint8", "modules": ["Linear"], "backend": backend(),
              "applied": "at load (tuneforge.export.load_export)"}
    write_json(out / MARKER, scheme)
    return {**info, "quantization": scheme}


def is_int8_folder(folder: Path) -> bool:
    return (folder / MARKER).is_file() and read_json(folder / MARKER).get("dtype") == "qint8"
