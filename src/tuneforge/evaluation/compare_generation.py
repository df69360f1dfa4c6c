"""Generation (sft) entrants for `tuneforge compare`, scored by each test example's answer loss (mean negative
log-likelihood of the reference answer's tokens, lower is better: deterministic, and defined for every system):

- zero-shot: the base model asked the question, after `compare.instruction` when given;
- few-shot: the k training examples most similar to the question as earlier chat turns (k = compare.few_shot_k);
- RAG: the top rag_k passages from `compare.documents` (or the training answers) put into the prompt;
- each fine-tuned run as trained, and each run with the same retrieved passages.

Demonstrations and passages are dropped, farthest first, until the prompt and the whole answer fit the context,
so every system is scored on the same answer tokens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.evaluation.compare_types import CompareInputs, Entrant
from tuneforge.evaluation.resources import PeakMemory, folder_bytes, latencies_ms

CHUNK_CHARS = 600


def _passages_from_documents(folder: Path) -> list[dict[str, Any]]:
    from tuneforge.errors import ConfigError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file())
    if not files:
        raise ConfigError(f"no .txt or .md documents in {folder}", key="compare.documents",
                          fix="point it at a folder of text documents, or remove it to retrieve from training data")
    out = []
    for path in files:
        chunk = ""
        for para in [p.strip() for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n")]:
            if chunk and len(chunk) + len(para) > CHUNK_CHARS:
                out.append({"text": chunk, "source": path.name})
                chunk = ""
            chunk = f"{chunk}\n\n{para}".strip() if para else chunk
        if chunk:
            out.append({"text": chunk, "source": path.name})
    if not out:
        raise ConfigError(f"the documents in {folder} hold no text", key="compare.documents",
                          fix="add text to the .txt/.md files, or remove compare.documents")
    return out


def _question(example: dict[str, Any]) -> str:
    user = [m["content"] for m in example["messages"][:-1] if m["role"] == "user"]
    return user[-1] if user else ""


def _with_prompt(example: dict[str, Any], instruction: str | None, demos: list[dict[str, Any]],
                 passages: list[str]) -> list[dict[str, str]]:
    """The example's conversation with demonstrations before it and passages/instruction in its last user turn."""
    messages = [dict(m) for m in example["messages"]]
    last_user = max(i for i, m in enumerate(messages[:-1]) if m["role"] == "user")
    content = messages[last_user]["content"]
    if passages:
        context = "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
        content = f"Use the context to answer.\n\nContext:\n{context}\n\nQuestion: {content}"
    if instruction:
        content = f"{instruction}\n\n{content}"
    messages[last_user]["content"] = content
    shots = [m for d in demos for m in d["messages"] if m["role"] != "system"]
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    return system + shots + rest


def _encode_last_answer(tokenizer: Any, template: str, messages: list[dict[str, str]],
                        max_length: int) -> dict[str, list[int]] | None:
    """Tokens with labels on the final assistant turn only; None when it does not fit `max_length`."""
    from tuneforge.tasks.chat_templates import assistant_spans

    text, spans = assistant_spans(tokenizer, template, messages)
    start, end = spans[-1]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) > max_length:
        return None
    labels = [t if start <= s < end else -100 for t, (s, _) in zip(enc["input_ids"], enc["offset_mapping"],
                                                                  strict=True)]
    return {"input_ids": enc["input_ids"], "labels": labels}


def _fit(tokenizer: Any, template: str, example: dict[str, Any], instruction: str | None,
         demos: list[dict[str, Any]], passages: list[str], max_length: int) -> dict[str, list[int]]:
    """Drop demonstrations, then passages, then the instruction, farthest first, until the whole answer fits; a bare
    example that is still too long loses the start of its prompt, never its answer. Labels: the last answer only,
    so every system is scored on the same answer tokens."""
    demos, passages = list(demos), list(passages)
    while True:
        row = _encode_last_answer(tokenizer, template, _with_prompt(example, instruction, demos, passages),
                                  max_length)
        if row is not None:
            return row
        if demos:
            demos.pop()
        elif passages:
            passages.pop()
        elif instruction:
            instruction = None
        else:
            row = _encode_last_answer(tokenizer, template, example["messages"], 10**9)
            assert row is not None
            return {"input_ids": row["input_ids"][-max_length:], "labels": row["labels"][-max_length:]}


@torch.inference_mode()
def per_example_loss(model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], batch_size: int = 8) -> np.ndarray:
    from tuneforge.data.packing import PackedCollator

    model.eval()
    device = next(model.parameters()).device
    collate = PackedCollator(tokenizer.pad_token_id)
    out = np.zeros(len(rows))
    for start in range(0, len(rows), batch_size):
        batch = collate([{**r, "position_ids": list(range(len(r["input_ids"])))}
                         for r in rows[start:start + batch_size]])
        logits = model(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                       use_cache=False).logits.float()
        labels = batch["labels"].to(device)[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100,
                                                reduction="none")
        counts = (labels != -100).sum(1).clamp(min=1)
        out[start:start + len(rows[start:start + batch_size])] = (nll.sum(1) / counts).cpu().numpy()
    return out


def generation_entrants(inp: CompareInputs) -> tuple[np.ndarray, list[Entrant]]:
    from tuneforge.config import ModelConfig
    from tuneforge.evaluation.embeddings import load_encoder, sentence_embeddings
    from tuneforge.evaluation.retrieval import VectorIndex
    from tuneforge.models.loading import load_tokenizer, resolve_model_path

    cfg, task, splits = inp.cfg, inp.task, inp.data.splits
    cmp, max_len = cfg.compare, cfg.data.max_length
    test, train = splits["test"], splits["train"]
    if not train or not test:
        from tuneforge.errors import ConfigError

        raise ConfigError("compare needs training examples (to retrieve from) and test examples", key="data.split",
                          fix="give a larger dataset or a test split")
    embed_path = resolve_model_path(ModelConfig(path="default"))  # the bundled sentence encoder
    with PeakMemory():
        start = time.perf_counter()
        enc_tok, encoder = load_tokenizer(embed_path, False), load_encoder(embed_path)
        train_q = sentence_embeddings(encoder, enc_tok, [_question(e) for e in train])
        test_q = sentence_embeddings(encoder, enc_tok, [_question(e) for e in test])
        demo_index = VectorIndex.build(train_q, [{"row": i} for i in range(len(train))])
        if cmp.documents:
            passages = _passages_from_documents(Path(cmp.documents))
        else:
            passages = [{"text": e["messages"][-1]["content"], "source": "train"} for e in train]
        doc_index = VectorIndex.build(sentence_embeddings(encoder, enc_tok, [p["text"] for p in passages]),
                                      passages)
        index_dir = doc_index.save(inp.out_dir / "index")
        index_s = time.perf_counter() - start
    inp.console.print(f"retrieval index: {doc_index.size} passages ({'documents' if cmp.documents else 'training'}"
                      f" data), {doc_index.kind}, saved in {index_dir}")
    _, demo_ids = demo_index.search(test_q, cmp.few_shot_k)
    _, doc_ids = doc_index.search(test_q, cmp.rag_k)
    demos = [[train[j] for j in row if j >= 0] for row in demo_ids]
    retrieved = [[passages[j]["text"] for j in row if j >= 0] for row in doc_ids]
    del encoder

    tokenizer = load_tokenizer(inp.model_path, cfg.model.trust_remote_code)
    task.prepare_tokenizer(tokenizer)
    _, template = task.chat_template(tokenizer)
    none: list[list[Any]] = [[] for _ in test]
    prompts = {"zero_shot": (none, none), "few_shot": (demos, none), "rag": (none, retrieved)}

    def rows_for(key: str, tok: Any, tmpl: str, instruction: str | None) -> list[dict[str, list[int]]]:
        d, p = prompts[key]
        return [_fit(tok, tmpl, e, instruction, d[i], p[i], max_len) for i, e in enumerate(test)]

    def measure(model: Any, tok: Any, tmpl: str, key: str, instruction: str | None) -> tuple[np.ndarray, list]:
        values = per_example_loss(model, tok, rows_for(key, tok, tmpl, instruction))
        d, p = prompts[key]
        convs = [_with_prompt(e, instruction, d[i], p[i])[:-1] for i, e in enumerate(test)]
        lat = latencies_ms(lambda c: task.predict(model, tok, [c], [], max_len, 1),
                           convs[:cmp.latency_examples], warmup=1)
        return values, lat

    entrants = []
    names = {"zero_shot": "zero-shot prompt" + (" (with task instruction)" if cmp.instruction else ""),
             "few_shot": f"few-shot prompt ({cmp.few_shot_k} similar examples)",
             "rag": f"RAG ({cmp.rag_k} retrieved passages in the prompt)"}
    base = task.build_model(inp.model_path, [], pad_token_id=tokenizer.pad_token_id)
    for key in ("zero_shot", "few_shot", "rag"):
        with PeakMemory() as mem:  # one measurement per row, read after the block (CUDA sets it on exit)
            values, lat = measure(base, tokenizer, template, key, cmp.instruction)
        entrants.append(Entrant(key, names[key], "baseline", values, 0.0 if key == "zero_shot" else index_s,
                                lat, mem.peak_mb, 0, 0 if key == "zero_shot" else folder_bytes(index_dir)))
    del base
    for run in inp.runs:
        loaded = run.loaded()
        _, run_template = loaded.task.chat_template(loaded.tokenizer)
        train_info = run.metrics.get("train", {})
        size = folder_bytes(run.path / "model")
        method = run.config.method.name
        for key, kind in (("zero_shot", "fine_tuned"), ("rag", "combined")):
            if kind == "combined" and not cmp.combine:
                continue
            with PeakMemory() as mem:
                values, lat = measure(loaded.model, loaded.tokenizer, run_template, key, None)
            tag = f"run:{run.path.name}" if kind == "fine_tuned" else f"run+rag:{run.path.name}"
            entrants.append(Entrant(tag, f"fine-tuned {method} ({run.path.name})" + (" + RAG" if key == "rag" else ""),
                                    kind, values, train_info.get("train_seconds"), lat, mem.peak_mb,
                                    int(train_info.get("trainable_params", 0)),
                                    size + (folder_bytes(index_dir) if key == "rag" else 0),
                                    base=f"run:{run.path.name}" if kind == "combined" else None))
        run.release()
    return np.zeros(len(test)), entrants
