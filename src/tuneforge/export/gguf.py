"""`gguf`: a Llama-family causal LM as one GGUF file (llama.cpp, Ollama), f16 or q8_0, plus an Ollama Modelfile.

Tensor names come from the gguf package's map for MODEL_ARCH.LLAMA; the query/key projections are permuted from
Hugging Face's rotate-half layout to the interleaved one llama.cpp expects (as llama.cpp's convert_hf_to_gguf.py
does). The tokenizer (tokens, types, merges or scores, special ids) and the run's chat template go into the
metadata. `read_back` reverses all of it into a transformers model, so the export is scored on the weights the
file really holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.export._common import ExportError

GGUF_FILE = "model.gguf"
LLAMA_TYPES = ("llama",)
OLLAMA_TEMPLATES = {  # Ollama's TEMPLATE is a Go template: the built-in chat templates written in its syntax
    "chatml": "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
              "<|im_start|>assistant\n",
    "llama3": "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
              "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
}


def check_gguf_run(run: Any, quantize: str | None) -> None:
    if not run.generative:
        raise ExportError(f"run {run.name} is a {run.task.name} run; --to gguf exports causal LMs (llama family)",
                          fix="export encoder runs with --to onnx or --to merged")
    model_type = _model_type(run)
    if model_type not in LLAMA_TYPES:
        raise ExportError(f"run {run.name} has a {model_type} base; the GGUF writer supports {', '.join(LLAMA_TYPES)}",
                          fix="export it with --to merged and convert with llama.cpp's convert_hf_to_gguf.py")
    if quantize not in (None, "f16", "q8_0"):
        raise ExportError(f"--quantize {quantize} is not available for gguf", fix="use --quantize f16 or q8_0")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ExportError("--to gguf needs the gguf package", fix="pip install 'tuneforge[export]'") from None


def _model_type(run: Any) -> str:
    import json

    for folder in (run.model_dir, Path(run.base_model_path)):  # adapter runs keep only the base's config
        config = folder / "config.json"
        if config.is_file():
            return str(json.loads(config.read_text()).get("model_type", "unknown"))
    return "unknown"


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """HF rotate-half q/k rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf.LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _heads_for(hf_name: str, config: Any) -> int | None:
    if hf_name.endswith("q_proj.weight"):
        return config.num_attention_heads
    if hf_name.endswith("k_proj.weight"):
        return config.num_key_value_heads or config.num_attention_heads
    return None


def gguf_names(state: dict[str, Any], config: Any) -> dict[str, str]:
    """HF tensor name -> GGUF tensor name; tied output weights are left out (llama.cpp reuses token_embd)."""
    import gguf

    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    names = {}
    for hf_name in state:
        if "rotary_emb" in hf_name or (hf_name == "lm_head.weight" and config.tie_word_embeddings):
            continue
        new = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ExportError(f"tensor {hf_name} has no GGUF name for llama", fix="export with --to merged")
        names[hf_name] = new
    return names


def _encode(data: np.ndarray, quantize: str) -> tuple[np.ndarray, Any]:
    """Norms and other 1-D tensors stay f32 (as llama.cpp's converter keeps them); matrices f16 or Q8_0."""
    import gguf

    if data.ndim < 2:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if quantize == "q8_0" and data.shape[-1] % 32 == 0:  # Q8_0 blocks are 32 values along a row
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data.astype(np.float32), qtype), qtype
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _add_hparams(writer: Any, config: Any, name: str, quantize: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(config))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if quantize == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


LLAMA3_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def pre_tokenizer_name(tokenizer: Any) -> str:
    """llama.cpp's name (`tokenizer.ggml.pre`) for the byte-level BPE pre-tokenizer the run's tokenizer.json uses.

    llama.cpp splits text with its own regexes, chosen by this name; with 'default' it splits punctuation and
    digits differently from GPT-2 style tokenizers, so the GGUF would tokenize prompts unlike the run. The three
    layouts Llama-family byte-level tokenizers use are recognised from their structure (llama.cpp's converter
    recognises them by hashing a test string's tokens): GPT-2's ByteLevel regex -> 'gpt-2'; digits split one by
    one, then ByteLevel (SmolLM) -> 'smollm'; Llama 3's Split regex, then ByteLevel without its regex ->
    'llama-bpe'. Anything else keeps 'default' (export_gguf adds a note)."""
    import json

    spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    parts = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    kinds = [part.get("type") for part in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if (kinds == ["Split", "ByteLevel"] and parts[0].get("pattern", {}).get("Regex") == LLAMA3_SPLIT
            and not parts[1].get("use_regex", True)):
        return "llama-bpe"
    return "default"


def bpe_merge_scores(tokenizer_dir: Path, tokens: list[Any]) -> list[float]:
    """Scores that make llama.cpp's 'llama' tokenizer merge in the BPE's merge order.

    llama.cpp tokenises a 'llama' vocabulary the SentencePiece way: it repeatedly joins the adjacent pair whose
    joined token has the highest score. gguf's LlamaHfVocab (which llama.cpp's converter uses for a tokenizer.json
    without tokenizer.model) scores every token -1000, so llama.cpp joins pairs left to right instead of in merge
    order and splits prompts into other ids than transformers (TinyStories: 'Tell' -> 'T'+'ell' instead of
    'T'+'e'+'ll▁'...). Scoring each token minus the rank of the merge that makes it restores the order."""
    import json

    merges = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"].get("merges", [])
    rank: dict[str, int] = {}
    for i, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, i)
    texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in tokens]
    return [-(rank[t] + 1.0) if t in rank else 0.0 for t in texts]


def _add_tokenizer(writer: Any, tokenizer: Any, tokenizer_dir: Path, vocab_size: int, template: str) -> str:
    """Byte-level BPE tokenizers as 'gpt2' (tokens + merges), byte-fallback BPE / SentencePiece as 'llama'."""
    import gguf
    from gguf.vocab import LlamaHfVocab, SpecialVocab

    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    added = set(tokenizer.added_tokens_decoder)
    try:
        vocab = LlamaHfVocab(tokenizer_dir)
        model, tokens, scores, types = "llama", *map(list, zip(*vocab.all_tokens(), strict=True))
        scores = bpe_merge_scores(tokenizer_dir, tokens)
    except (FileNotFoundError, TypeError):  # not byte-fallback BPE: a GPT-2 style byte-level BPE
        reverse = {i: t for t, i in tokenizer.get_vocab().items()}
        model, tokens, scores = "gpt2", [reverse.get(i, f"[PAD{i}]") for i in range(vocab_size)], None
        types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added
                 else gguf.TokenType.UNUSED if i not in reverse else gguf.TokenType.NORMAL for i in range(vocab_size)]
    tokens, types = tokens[:vocab_size], types[:vocab_size]
    for i in range(len(tokens), vocab_size):  # the model's embedding can be larger than the vocabulary
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    pre = pre_tokenizer_name(tokenizer) if model == "gpt2" else "default"  # 'llama' (SentencePiece) has none
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if scores is not None:
        writer.add_token_scores(scores[:vocab_size] + [-1000.0] * (vocab_size - len(scores[:vocab_size])))
    specials = SpecialVocab(tokenizer_dir, load_merges=model == "gpt2", n_vocab=vocab_size)
    specials.chat_template = None  # the run's template is written below, once
    specials.add_to_gguf(writer, quiet=True)
    writer.add_chat_template(template)
    return pre if model == "gpt2" else "sentencepiece"


def write_gguf(merged: Any, tokenizer_dir: Path, path: Path, quantize: str, name: str) -> tuple[dict[str, str], str]:
    """Write the merged model; returns HF name -> GGUF name for every tensor written, and the pre-tokenizer."""
    import gguf

    config = merged.model.config
    state = {k: v.detach().float().cpu().numpy() for k, v in merged.model.state_dict().items()}
    names = gguf_names(state, config)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_hparams(writer, config, name, quantize)
    pre = _add_tokenizer(writer, merged.tokenizer, tokenizer_dir, config.vocab_size, merged.chat_template[1])
    for hf_name, gguf_name in names.items():
        data = state[hf_name]
        heads = _heads_for(hf_name, config)
        if heads:
            data = _permute(data, heads)
        encoded, qtype = _encode(data, quantize)
        writer.add_tensor(gguf_name, encoded, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return names, pre


def modelfile(template_name: str, template: str, stops: list[str]) -> str:
    lines = ["# Ollama Modelfile written by tuneforge; `ollama create NAME -f Modelfile` in this folder.",
             f"FROM ./{GGUF_FILE}"]
    if template_name in OLLAMA_TEMPLATES:
        lines.append(f'TEMPLATE """{OLLAMA_TEMPLATES[template_name]}"""')
    else:  # a model's own Jinja template: Ollama reads tokenizer.chat_template from the GGUF metadata
        lines.append("# TEMPLATE: the run's Jinja chat template is in the GGUF metadata (tokenizer.chat_template)")
    lines += [f'PARAMETER stop "{s}"' for s in dict.fromkeys(stops) if s]
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def export_gguf(run: Any, out: Path, quantize: str | None) -> dict[str, Any]:
    from tuneforge.export.merge import merged_model
    from tuneforge.tasks.chat_templates import END_OF_TURN

    quantize = quantize or "f16"
    check_gguf_run(run, quantize)
    merged = merged_model(run)
    out.mkdir(parents=True, exist_ok=True)
    names, pre = write_gguf(merged, run.model_dir, out / GGUF_FILE, quantize, run.name)
    # config + tokenizer beside the file: `read_back` rebuilds a transformers model from the GGUF weights
    merged.model.config.save_pretrained(str(out))
    merged.tokenizer.save_pretrained(str(out))
    template_name, template = merged.chat_template
    stops = [END_OF_TURN.get(template_name, ""), merged.tokenizer.eos_token or ""]
    (out / "Modelfile").write_text(modelfile(template_name, template, stops))
    notes = [] if pre != "default" else [
        "the tokenizer's pre-tokenizer is not one llama.cpp names (gpt-2, smollm, llama-bpe): the GGUF says "
        "'default', so llama.cpp may split prompts into other tokens than the run does"]
    return {"files": sorted(p.name for p in out.iterdir()), "format": "gguf", "dtype": quantize,
            "tensors": len(names), "chat_template": template_name, "stop": [s for s in stops if s],
            "pre_tokenizer": pre, "notes": notes}


def read_back(folder: Path) -> Any:
    """A transformers Llama holding the (dequantised) weights of folder/model.gguf."""
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config).float().eval()
    state = model.state_dict()
    stored = {t.name: t for t in GGUFReader(str(folder / GGUF_FILE)).tensors}
    loaded = {}
    for hf_name, gguf_name in gguf_names(state, config).items():
        tensor = stored[gguf_name]
        data = dequantize(tensor.data, tensor.tensor_type).reshape(state[hf_name].shape).astype(np.float32)
        heads = _heads_for(hf_name, config)
        loaded[hf_name] = torch.from_numpy(_unpermute(data, heads) if heads else data)
    model.load_state_dict(loaded, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model
