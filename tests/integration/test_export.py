"""Exports of finished runs (merged, int8, ONNX, GGUF), each checked against the run it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import assert_user_error, base_config, make_intent_rows, write_jsonl

TEXTS = ["refund my order #1001 please", "where is my parcel", "cancel the lamp order now thanks", "track it"]


def _train(tmp: Path, model: Path, name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    import tuneforge
    from tuneforge.config import parse_config

    data = write_jsonl(tmp / f"{name}.jsonl", rows)
    cfg = base_config(model, data, tmp / "runs", name=name, **extra)
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 6, "learning_rate": 1e-2, "threads": 1}
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs" / name


@pytest.fixture(scope="module")
def lora_classifier(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("cls"), tiny_bert, "cls", make_intent_rows(20), method={"name": "lora"})


def _chat_rows(n: int = 30) -> list[dict[str, Any]]:
    answers = ["Your refund is on its way.", "Your parcel arrives tomorrow.", "Your order is cancelled."]
    return [{"prompt": f"{['refund', 'track', 'cancel'][i % 3]} order {i}", "completion": answers[i % 3]}
            for i in range(n)]


@pytest.fixture(scope="module")
def lora_lm(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("lm"), tiny_causal, "lm", _chat_rows(), method={"name": "lora"},
                  task={"name": "sft", "max_new_tokens": 6, "eval_generations": 2})


def _hf_logits(folder: Path, auto_cls: Any, enc: dict[str, Any]) -> np.ndarray:
    import torch

    model = auto_cls.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return model(**enc).logits.numpy()


def test_merged_lora_classifier_loads_in_plain_transformers_with_the_runs_logits(lora_classifier: Path,
                                                                                 tiny_bert: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tuneforge.export import export_run
    from tuneforge.registry.loaded_run import load_run

    result = export_run(lora_classifier, "merged", limit=12)
    files = set(result.info["files"])
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files and "adapter_config.json" not in files
    enc = dict(AutoTokenizer.from_pretrained(str(result.out))(TEXTS, padding=True, return_tensors="pt"))
    run = load_run(lora_classifier)
    with torch.no_grad():
        expected = run.model()(**enc).logits.numpy()
    merged = _hf_logits(result.out, AutoModelForSequenceClassification, enc)
    assert np.abs(merged - expected).max() <= 1e-4
    # the adapters really were folded in: the base model with the same head gives other logits
    assert np.abs(_hf_logits(tiny_bert, AutoModelForSequenceClassification, enc)[:, :2] - expected[:, :2]).max() > 1e-3
    figures = result.figures
    assert figures["agreement"] == 1.0 and figures["max_abs_logit_diff"] <= 1e-4
    assert figures["difference"] == pytest.approx(0.0, abs=1e-9)
    report = (result.out / "report.md").read_text()
    assert "| export: merged |" in report and (result.out / "report.html").is_file()
    meta = json.loads((result.out / "export.json").read_text())
    assert meta["kind"] == "merged" and meta["run"]["path"] == str(lora_classifier.resolve())
    assert meta["run"]["method"]["name"] == "lora"


def test_merged_lora_causal_lm_keeps_logits_and_chat_template(lora_lm: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.export import export_run
    from tuneforge.registry.loaded_run import load_run

    result = export_run(lora_lm, "merged", limit=4)
    run = load_run(lora_lm)
    tok = AutoTokenizer.from_pretrained(str(result.out))
    assert tok.chat_template == run.chat_template()[1]
    enc = dict(tok(["<|im_start|>user\nrefund order 3<|im_end|>\n"], return_tensors="pt"))
    with torch.no_grad():
        expected = run.model()(**enc).logits.numpy()
    assert np.abs(_hf_logits(result.out, AutoModelForCausalLM, enc) - expected).max() <= 1e-4
    assert result.figures["agreement"] == 1.0 and result.figures["agreement_kind"].startswith("greedy")


def test_int8_export_quantises_linear_layers_at_load_and_agrees_mostly(lora_classifier: Path) -> None:
    import torch

    from tuneforge.export import export_run, load_export

    result = export_run(lora_classifier, "int8", limit=12)
    assert (result.out / "quantization.json").is_file()
    assert not list(result.out.glob("*.bin")) and not list(result.out.glob("*.pt"))  # no pickles
    model = load_export(result.out).model
    quantised = [m for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert quantised and not [m for m in model.modules() if type(m) is torch.nn.Linear]  # every Linear is int8
    assert result.figures["agreement"] >= 0.5 and result.figures["max_abs_logit_diff"] > 0


def test_onnx_classifier_agrees_with_pytorch_on_the_test_split(lora_classifier: Path) -> None:
    from tuneforge.export import export_run

    result = export_run(lora_classifier, "onnx")
    figures = result.figures
    assert figures["examples"] > 0
    assert figures["agreement"] == 1.0 and figures["max_abs_logit_diff"] <= 1e-4
    assert (result.out / "model.onnx").is_file() and "input_ids" in result.info["inputs"]
    quantised = export_run(lora_classifier, "onnx", "int8")
    assert quantised.out != result.out and quantised.info["dtype"].startswith("int8")
    assert quantised.figures["sides"][next(reversed(quantised.figures["sides"]))]["size_bytes"] < \
        figures["sides"][next(reversed(figures["sides"]))]["size_bytes"]
    # int8 weights carry one scale per output channel (docs/bench/export_banking77.md: a quarter of the error of
    # one scale per tensor on MiniLM); a per-tensor weight would have a scalar zero point
    import onnx

    graph = onnx.load(str(quantised.out / "model.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    weight_zero_points = [inits[n.input[3]] for n in graph.node if n.op_type == "MatMulInteger" and n.input[3] in inits]
    assert weight_zero_points and all(len(z.dims) == 1 and z.dims[0] > 1 for z in weight_zero_points)
    assert quantised.info["quantization"]["scheme"] == "per-channel"


def test_gguf_of_a_tiny_llama_holds_every_tensor_tokenizer_and_template(lora_lm: Path) -> None:
    from gguf import GGUFReader

    from tuneforge.export import export_run
    from tuneforge.registry.loaded_run import load_run

    for quant in ("f16", "q8_0"):
        result = export_run(lora_lm, "gguf", quant, limit=4)
        reader = GGUFReader(str(result.out / "model.gguf"))
        names = {t.name for t in reader.tensors}
        assert {"token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_q.weight",
                "blk.1.ffn_down.weight", "blk.1.attn_norm.weight"} <= names and len(names) == 2 + 1 + 9 * 2
        fields = reader.fields
        run = load_run(lora_lm)
        tokens = fields["tokenizer.ggml.tokens"]
        assert len(tokens.data) == len(run.tokenizer)
        assert fields["tokenizer.ggml.merges"].data and "tokenizer.ggml.eos_token_id" in fields
        template = fields["tokenizer.chat_template"]
        assert bytes(template.parts[template.data[0]]).decode() == run.chat_template()[1]
        assert 'PARAMETER stop "<|im_end|>"' in (result.out / "Modelfile").read_text()
        # the weights read back reproduce the run's greedy answers (f16 / q8_0 rounding aside)
        assert result.figures["agreement"] >= (0.99 if quant == "f16" else 0.5)


@pytest.mark.parametrize("case", ["missing", "onnx_of_lm", "gguf_of_bert", "out_is_a_run", "bad_quantize"])
def test_bad_export_requests_exit_2(case: str, tmp_path: Path, lora_classifier: Path, lora_lm: Path,
                                    cli: Any) -> None:
    if case == "missing":
        assert_user_error(cli("export", str(tmp_path / "nope"), "--to", "merged"), "not a run folder")
    elif case == "onnx_of_lm":
        assert_user_error(cli("export", str(lora_lm), "--to", "onnx"), "sft run", "--to onnx", fix="gguf")
    elif case == "gguf_of_bert":
        assert_user_error(cli("export", str(lora_classifier), "--to", "gguf"), "classification run", fix="onnx")
    elif case == "out_is_a_run":
        res = cli("export", str(lora_classifier), "--to", "merged", "--out", str(lora_lm))
        assert_user_error(res, "is not a tuneforge export", fix="--out")
        assert (lora_lm / "metrics.json").is_file()
    else:
        assert_user_error(cli("export", str(lora_classifier), "--to", "onnx", "--quantize", "q8_0"),
                          "--quantize q8_0", fix="--quantize int8")


def test_mean_pooled_classifier_keeps_its_pooling_in_onnx_and_merged(tiny_bert: Path, tmp_path: Path) -> None:
    """Mean-pooled classifiers (the default MiniLM's pooling): the ONNX graph must pool over the mask it is given,
    at any padding, and the merged folder must load in plain transformers (remote code) with the run's logits."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tuneforge.export import export_run
    from tuneforge.registry.loaded_run import load_run

    run = _train(tmp_path, tiny_bert, "mean", make_intent_rows(20), task={"name": "classification",
                                                                          "pooling": "mean"})
    onnx = export_run(run, "onnx")
    assert onnx.figures["agreement"] == 1.0 and onnx.figures["max_abs_logit_diff"] <= 1e-4
    merged = export_run(run, "merged", limit=4)
    assert merged.info["plain_transformers"] == "trust_remote_code"
    assert "mean pooling" in (merged.out / "report.md").read_text()
    enc = dict(AutoTokenizer.from_pretrained(str(merged.out))(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        expected = load_run(run).model()(**enc).logits.numpy()
        plain = AutoModelForSequenceClassification.from_pretrained(str(merged.out), trust_remote_code=True).eval()
        assert np.abs(plain(**enc).logits.numpy() - expected).max() <= 1e-4
        stock = AutoModelForSequenceClassification.from_pretrained(str(merged.out)).eval()  # [CLS]: not the run
        assert np.abs(stock(**enc).logits.numpy() - expected).max() > 1e-4


def test_adapter_run_is_refused_with_the_reason(tiny_bert: Path, tmp_path: Path, cli: Any) -> None:
    run = _train(tmp_path, tiny_bert, "adapter", make_intent_rows(10), method={"name": "adapter"})
    res = cli("export", str(run), "--to", "merged")
    assert_user_error(res, "method 'adapter'", "cannot be folded", fix="lora")
    assert not (run / "exports" / "merged").exists()


def test_export_of_a_tracked_run_is_an_mlflow_model_version_tagged_with_its_kind(tiny_bert: Path,
                                                                                 tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from tuneforge.export import export_run

    run = _train(tmp_path, tiny_bert, "tracked", make_intent_rows(10),
                 tracking={"mlflow": True, "registered_name": "intents"})
    result = export_run(run, "onnx", "int8", measure=False)
    recorded = result.info["tracking"]
    assert recorded.get("registered_model") == "intents", recorded
    client = MlflowClient(recorded["tracking_uri"])
    version = client.get_model_version("intents", recorded["version"])
    assert version.tags["export"] == "onnx" and version.tags["quantize"] == "int8"
    assert version.run_id == json.loads((run / "run.json").read_text())["tracking"]["run_id"]
    saved = json.loads((result.out / "export.json").read_text())
    assert saved["tracking"]["version"] == recorded["version"]


def test_student_export_distils_the_run_into_a_smaller_model_in_the_same_table(lora_lm: Path, tiny_student: Path,
                                                                               tmp_path: Path, cli: Any) -> None:
    import yaml

    from conftest import write_yaml
    from tuneforge.export import export_run, load_export
    from tuneforge.registry.loaded_run import load_run

    config = write_yaml(tmp_path / "student.yaml", {
        "model": {"path": str(tiny_student)}, "method": {"name": "full"},
        "task": {"eval_generations": 2, "forgetting": {"enabled": False}},
        "training": {"epochs": 1, "max_steps": 4, "batch_size": 8, "learning_rate": 1e-2, "threads": 1},
        "tracking": {"mlflow": False}, "evaluation": {"baselines": []}})
    result = export_run(lora_lm, "student", limit=4, student_config=config)
    student = result.out / "run"
    saved = yaml.safe_load((student / "config.yaml").read_text())
    assert saved["task"]["name"] == "distillation" and saved["task"]["teacher"] == str(load_run(lora_lm).path)
    assert saved["data"]["train"] == str(lora_lm / "data" / "train.jsonl")  # the run's own cleaned split
    assert json.loads((student / "metrics.json").read_text())["test"]["teacher_kl"] >= 0
    assert result.info["compression"] > 1.5
    (_, run_side), (name, side) = result.figures["sides"].items()
    assert name == "export: student" and side["metric"] is not None and 0 <= result.figures["agreement"] <= 1
    assert side["size_bytes"] < run_side["size_bytes"]
    loaded = load_export(result.out).model
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in load_run(lora_lm).model().parameters())
    assert "| export: student |" in (result.out / "report.md").read_text()
    assert_user_error(cli("export", str(lora_lm), "--to", "student"), "--student-config", fix="model.path")
