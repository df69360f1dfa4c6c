"""GGUF files as model.path: converted once (cached by sha256), same logits as the model they came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED, assert_user_error, base_config, make_config, write_jsonl

gguf = pytest.importorskip("gguf", reason="the gguf package (tuneforge[generative]) is not installed")

SMOLLM2 = SHARED / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _permute(w: Any, n_head: int) -> Any:
    """llama.cpp's convert_hf_to_gguf.py stores q/k rows in its own rotary order; transformers undoes exactly this."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_tokenizer(writer: Any, folder: Path) -> None:
    spec = json.loads((folder / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {a["content"] for a in spec.get("added_tokens", []) if a.get("special")}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control, 1: normal
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["</s>"])
    writer.add_pad_token_id(vocab["<pad>"])
    writer.add_chat_template(CHATML)


def export_llama_gguf(folder: Path, out: Path) -> Path:
    """Write the HF Llama in `folder` as an F32 GGUF, the way llama.cpp's converter lays it out (no network)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    c = model.config
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_vocab_size(c.vocab_size)
    _write_tokenizer(writer, folder)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for name, tensor in model.state_dict().items():
        w = tensor.numpy()
        if name == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", w)
        elif name == "model.norm.weight":
            writer.add_tensor("output_norm.weight", w)
        elif name == "lm_head.weight":
            if not c.tie_word_embeddings:
                writer.add_tensor("output.weight", w)
        else:
            _, _, layer, module = name.split(".", 3)
            hf_module, kind = module.rsplit(".", 1)
            if hf_module == "self_attn.q_proj":
                w = _permute(w, c.num_attention_heads)
            elif hf_module == "self_attn.k_proj":
                w = _permute(w, c.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{names[hf_module]}.{kind}", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tiny_causal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_llama_gguf(tiny_causal, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_gguf_loads_cached_with_the_source_logits(tiny_gguf: Path, tiny_causal: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tuneforge.config import ModelConfig
    from tuneforge.models import gguf as tf_gguf
    from tuneforge.models.loading import load_tokenizer, resolve_model_path

    before = tf_gguf.conversions
    folder = Path(resolve_model_path(ModelConfig(path=str(tiny_gguf)), tmp_path / "runs"))
    sha = tf_gguf.file_sha256(tiny_gguf)
    assert folder == (tmp_path / "runs" / ".cache" / "gguf" / sha).resolve()
    assert tf_gguf.conversions == before + 1
    assert json.loads((folder / "tuneforge_gguf.json").read_text())["gguf_sha256"] == sha
    assert not list(folder.parent.glob(".staging-*")), "the staging folder must be renamed away"

    source = AutoModelForCausalLM.from_pretrained(str(tiny_causal), dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, source(ids).logits, rtol=1e-5, atol=1e-5)

    tok, src_tok = load_tokenizer(str(folder)), load_tokenizer(str(tiny_causal))
    text = "please refund order #1001 thanks"
    assert tok(text)["input_ids"] == src_tok(text)["input_ids"]
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                               add_generation_prompt=True)

    # Second load (a folder holding the file this time): served from the cache, no conversion at all.
    monkeypatch.setattr(tf_gguf, "_convert", lambda *a: pytest.fail("converted again instead of using the cache"))
    again = resolve_model_path(ModelConfig(path=str(tiny_gguf.parent)), tmp_path / "runs")
    assert Path(again) == folder and tf_gguf.conversions == before + 1


def test_edited_gguf_gets_a_new_cache_entry(tiny_gguf: Path, tmp_path: Path) -> None:
    from tuneforge.config import ModelConfig
    from tuneforge.models.loading import resolve_model_path

    first = resolve_model_path(ModelConfig(path=str(tiny_gguf)), tmp_path)
    edited = tmp_path / "edited.gguf"
    edited.write_bytes(tiny_gguf.read_bytes() + b"\0" * 32)  # padding after the tensors: same model, new content
    second = resolve_model_path(ModelConfig(path=str(edited)), tmp_path)
    assert first != second and Path(second).name != Path(first).name


def test_model_card_records_the_gguf(tiny_gguf: Path, tmp_path: Path) -> None:
    import yaml

    from tuneforge.config import RunConfig
    from tuneforge.models import gguf as tf_gguf
    from tuneforge.registry.model_card import model_card

    cfg = RunConfig.model_validate({"name": "g", "output_dir": str(tmp_path), "model": {"path": str(tiny_gguf)},
                                    "data": {"train": "x.jsonl"}, "task": {"name": "sft"}})
    from tuneforge.tasks import TASKS

    card = model_card(cfg, TASKS.get("sft")(cfg.task), "transformers", {"loss": 1.0}, [], {}, 1, 2)
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model_gguf"] == {"gguf_path": str(tiny_gguf.resolve()),
                                        "gguf_sha256": tf_gguf.file_sha256(tiny_gguf),
                                        "converted_to": str(tmp_path.resolve() / ".cache" / "gguf"
                                                            / tf_gguf.file_sha256(tiny_gguf))}


def test_missing_gguf_is_one_clear_error(cli, intent_file: Path, tmp_path: Path) -> None:
    res = cli("train", make_config(tmp_path, tmp_path / "gone.gguf", intent_file), "--quiet")
    assert_user_error(res, "model.path", "gone.gguf", "GGUF file does not exist", fix="check the path")


def test_corrupt_gguf_is_one_clear_error(cli, intent_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a gguf")
    res = cli("train", make_config(tmp_path, bad, intent_file), "--quiet")
    assert_user_error(res, "model.path", "bad.gguf", "is not a GGUF file", fix="give a .gguf file")


@pytest.mark.parametrize("keep", [3000, -100], ids=["in-metadata", "in-tensors"])
def test_truncated_gguf_is_one_clear_error(cli, tiny_gguf: Path, intent_file: Path, tmp_path: Path,
                                          keep: int) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:keep])  # a valid header, the rest cut off
    res = cli("train", make_config(tmp_path, cut, intent_file), "--quiet")
    assert_user_error(res, "cut.gguf", "cannot read the GGUF file", fix="re-download or re-export")
    assert not list((tmp_path / "runs" / ".cache" / "gguf").glob("*")), "a failed conversion must leave nothing"


def test_folder_with_two_ggufs_is_ambiguous(tiny_gguf: Path, tmp_path: Path) -> None:
    from tuneforge.config import ModelConfig
    from tuneforge.errors import ModelError
    from tuneforge.models.loading import resolve_model_path

    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(tiny_gguf.read_bytes())
    with pytest.raises(ModelError, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        resolve_model_path(ModelConfig(path=str(tmp_path)), tmp_path / "runs")


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.skipif(not SMOLLM2.is_file(), reason="../shared/models/smollm2-135m-instruct not present")
def test_real_smollm2_gguf_answers(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tuneforge.config import ModelConfig
    from tuneforge.models.loading import load_tokenizer, resolve_model_path

    torch.set_num_threads(1)
    folder = resolve_model_path(ModelConfig(path=str(SMOLLM2.parent)), tmp_path)
    tok = load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_sft_run_from_a_gguf_records_it(tiny_gguf: Path, tmp_path: Path) -> None:
    """The whole run path: `train` with model.path = a .gguf trains, caches under output_dir and names the file."""
    import yaml

    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.models import gguf as tf_gguf

    rows = [{"prompt": f"refund order {i}", "completion": "Your refund is on its way."} for i in range(30)]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = base_config(tiny_gguf, data, tmp_path / "runs", name="g", task={"name": "sft", "max_new_tokens": 4,
                                                                         "forgetting": {"enabled": False}})
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 2, "batch_size": 8}
    tuneforge.train(parse_config(cfg), quiet=True)
    sha = tf_gguf.file_sha256(tiny_gguf)
    assert (tmp_path / "runs" / ".cache" / "gguf" / sha / "model.safetensors").is_file()
    front = yaml.safe_load((tmp_path / "runs" / "g" / "README.md").read_text().split("---")[1])
    assert front["base_model_gguf"]["gguf_sha256"] == sha
