"""Shared fixtures: tiny random models built here (no downloads), small datasets, and a CLI runner."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tuneforge  # noqa: F401 - applies the offline/telemetry defaults before transformers is imported

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

INTENTS = {
    "refund": ["I want my money back for order {n}", "please refund order {n}", "refund the {p} I returned",
               "where is my refund for the {p}", "can I get a refund on {p}"],
    "track": ["where is my order {n}", "track package {n} please", "when will the {p} arrive",
              "has order {n} shipped yet", "tracking number for the {p}"],
    "cancel": ["cancel order {n} now", "I no longer want the {p}, cancel it", "please cancel my {p} order",
               "stop order {n} before it ships", "how do I cancel order {n}"],
}
PRODUCTS = ["lamp", "kettle", "chair", "desk", "phone case", "blender", "backpack", "monitor", "jacket", "mug"]


def make_intent_rows(n_per_label: int = 40, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, templates in INTENTS.items():
        for i in range(n_per_label):
            text = rng.choice(templates).format(n=f"#{1000 + i * 7 + rng.randint(0, 6)}", p=rng.choice(PRODUCTS))
            rows.append({"text": f"{text} {rng.choice(['', 'thanks', 'asap', 'today', 'pls'])}".strip() + f" {i}",
                         "label": label})
    rng.shuffle(rows)
    return rows


def make_ner_rows(n: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    people, places = ["Alice", "Bob", "Carla", "Dmitri", "Emeka"], ["Paris", "Lagos", "Oslo", "Lima", "Kyoto"]
    rows = []
    for i in range(n):
        person, place = rng.choice(people), rng.choice(places)
        tokens = [person, "flew", "to", place, "on", "day", str(i)]
        tags = ["B-PER", "O", "O", "B-LOC", "O", "O", "O"]
        if i % 3 == 0:
            tokens = ["Mr", *tokens]
            tags = ["B-PER", "I-PER", *tags[1:]]
        assert len(tags) == len(tokens)
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _minilm_tokenizer_dir() -> Path:
    from tuneforge.models.loading import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_tokenizer_dir()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights (decoder-only: the classifier head reads the last token)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_tokenizer_dir()))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    LlamaModel(config).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture()
def intent_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "intents.jsonl", make_intent_rows())


@pytest.fixture()
def ner_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "ner.jsonl", make_ner_rows())


def base_config(model: Path, train: Path, out: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "t", "output_dir": str(out), "model": {"path": str(model)},
        "data": {"train": str(train), "max_length": 32},
        "task": {"name": "classification"}, "method": {"name": "full"},
        "training": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "seed": 1, "threads": 2},
        "tracking": {"mlflow": False}, "evaluation": {"baselines": []},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the `tuneforge` CLI in-process (fast) exactly as the console script does; returns code/out/err."""
    from tuneforge.cli.main import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["tuneforge", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


_BPE: list[Any] = []


def _bpe_tokenizer(out: Path) -> Any:
    """A byte-level BPE tokenizer trained here on the test corpus (no downloads); trained once per session, since
    BPE merges with tied counts can come out differently run to run and the tiny models must share one vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if _BPE:
        _BPE[0].save_pretrained(str(out))
        return _BPE[0]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [r["text"] for r in make_intent_rows(40)] + ["<|im_start|>user\nhello<|im_end|>\n"] * 20
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.save_pretrained(str(out))
    _BPE.append(tokenizer)
    return tokenizer


def _tiny_lm(tmp_path_factory: pytest.TempPathFactory, arch: str, layers: int = 2, hidden: int = 32) -> Path:
    """A small causal LM of one architecture, random weights, sharing the BPE tokenizer above."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp(f"tiny-{arch}")
    tok = _bpe_tokenizer(out)
    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.pad_token_id}
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=hidden, n_layer=layers, n_head=2, n_positions=256, **ids))
    else:
        config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
        model = model_cls(config_cls(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                     num_key_value_heads=1, intermediate_size=2 * hidden, max_position_embeddings=256,
                                     **ids))
    model.save_pretrained(str(out), safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama causal LM with random weights and a byte-level BPE tokenizer trained here (no downloads)."""
    return _tiny_lm(tmp_path_factory, "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_lm(tmp_path_factory, "qwen2")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_lm(tmp_path_factory, "gpt2")


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller (1-layer, 16-wide) Qwen2 with the same tokenizer as tiny_causal: a distillation student."""
    return _tiny_lm(tmp_path_factory, "qwen2", layers=1, hidden=16)


# ---- bad-input test helpers (test_bad_inputs.py, test_bad_runs.py) ----------------------------------------


def assert_user_error(res: Any, *needles: str, fix: str | None = None) -> None:
    """Exit code 2, an `error:` message holding every needle (and the fix hint), no traceback anywhere."""
    shown = f"exit code {res.code}\n--- stdout ---\n{res.out}\n--- stderr ---\n{res.err}"
    assert "Traceback" not in res.err and "Traceback" not in res.out, shown
    assert res.code == 2, shown
    assert "error:" in res.err, shown
    for needle in needles:
        assert needle in res.err, f"{needle!r} missing from stderr\n{shown}"
    if fix is not None:
        assert "Fix:" in res.err, f"no fix hint\n{shown}"
        assert fix in res.err, f"fix hint {fix!r} missing\n{shown}"


def make_config(tmp_path: Path, model: Path, train: Path | str, name: str = "run.yaml", **extra: Any) -> Path:
    """A tiny run config: the tiny BERT, 2 steps at most, no baselines, no MLflow."""
    cfg = base_config(model, Path(train), tmp_path / "runs", **extra)
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 2}
    return write_yaml(tmp_path / name, cfg)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 for this test session (skipped, with the reason, where there is none)."""
    from postgres_server import PostgresServer

    server = PostgresServer()
    reason = server.unavailable_reason()
    if reason:
        pytest.skip(reason)
    server.start()
    try:
        yield server
    finally:
        server.stop()
