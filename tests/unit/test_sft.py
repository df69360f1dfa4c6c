"""SFT building blocks: assistant-only masks over multi-turn chats, packing without cross-attention, templates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneforge.data.packing import PackedCollator, best_fit_decreasing, pack
from tuneforge.tasks.chat_templates import BUILTIN, tokenize_with_mask

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "where is my order"},
        {"role": "assistant", "content": "It ships today."}, {"role": "user", "content": "and the refund"},
        {"role": "assistant", "content": "Refund sent."}]


@pytest.fixture()
def tokenizer(tiny_causal: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_causal))


@pytest.mark.parametrize("template", sorted(BUILTIN))
def test_only_assistant_turns_are_trained_every_turn(tokenizer, template: str) -> None:
    enc = tokenize_with_mask(tokenizer, BUILTIN[template], CHAT, max_length=512)
    trained = tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != -100])
    assert "It ships today." in trained and "Refund sent." in trained  # both assistant turns, not just the last
    for text in ("Be brief.", "where is my order", "and the refund", "user", "system"):
        assert text not in trained
    assert all(lab in (-100, tok) for tok, lab in zip(enc["input_ids"], enc["labels"], strict=True))


def test_train_on_prompt_trains_everything(tokenizer) -> None:
    enc = tokenize_with_mask(tokenizer, BUILTIN["chatml"], CHAT, max_length=512, train_on_prompt=True)
    assert enc["labels"] == enc["input_ids"]


def test_best_fit_decreasing_fills_bins() -> None:
    bins = best_fit_decreasing([7, 5, 3, 3, 2], capacity=10)
    assert sorted(sorted(b) for b in bins) == [[0, 2], [1, 3, 4]]  # 7+3 and 5+3+2: two full bins
    assert all(sum([7, 5, 3, 3, 2][i] for i in b) <= 10 for b in bins)


def _sft_model(path: Path, train_mode: bool):
    from tuneforge.tasks.sft import SFT, SFTParams

    model = SFT(SFTParams()).build_model(str(path), [])
    return model.train() if train_mode else model.eval()


@pytest.mark.parametrize("arch", ["tiny_causal", "tiny_qwen2", "tiny_gpt2"])
@pytest.mark.parametrize("train_mode", [True, False], ids=["train-mode", "eval-mode"])
def test_packed_logits_equal_one_by_one(arch: str, request: pytest.FixtureRequest, tokenizer,
                                        train_mode: bool) -> None:
    """No cross-contamination: each example's logits in a packed row equal its logits run alone (as the task
    builds the model: in train mode transformers would otherwise build a KV cache and ignore the packing), on
    Llama, Qwen2 and GPT-2."""
    model = _sft_model(request.getfixturevalue(arch), train_mode)
    for key in ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop"):  # GPT-2 names its own
        if hasattr(model.config, key):
            setattr(model.config, key, 0.0)
    model.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, torch.nn.Dropout) else None)
    texts = ["where is my order #12", "refund please", "cancel the blender order now thanks"]
    rows = [{"input_ids": tokenizer(t)["input_ids"], "labels": tokenizer(t)["input_ids"]} for t in texts]
    packed = pack(rows, capacity=64)
    assert len(packed) == 1
    batch = PackedCollator(tokenizer.pad_token_id)(packed)
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        offset = 0
        order = best_fit_decreasing([len(r["input_ids"]) for r in rows], 64)[0]
        for i in order:
            ids = torch.tensor([rows[i]["input_ids"]])
            alone = model(input_ids=ids).logits[0]
            torch.testing.assert_close(together[offset:offset + ids.shape[1]], alone, rtol=1e-4, atol=1e-4)
            offset += ids.shape[1]
    assert [batch["labels"][0, 0].item()] == [-100]


def test_padding_rows_do_not_change_packed_logits(tiny_causal: Path, tokenizer) -> None:
    model = _sft_model(tiny_causal, train_mode=True)
    short = {"input_ids": tokenizer("hi there")["input_ids"]}
    long = {"input_ids": tokenizer("a much longer row that forces the short one to be padded")["input_ids"]}
    rows = [{**r, "labels": r["input_ids"], "position_ids": list(range(len(r["input_ids"])))} for r in (short, long)]
    batch = PackedCollator(tokenizer.pad_token_id)(rows)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        padded = logits[0, :len(short["input_ids"])]
        alone = model(input_ids=torch.tensor([short["input_ids"]])).logits[0]
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)


def test_reply_is_cut_at_the_end_of_turn_marker() -> None:
    from tuneforge.tasks._generation import cut_at_stop as _cut_at_stop

    assert _cut_at_stop("Refund sent.<|im_end|>\n<|im_start|>user", "<|im_end|>") == "Refund sent."
    assert _cut_at_stop("Refund sent.<|im", "<|im_end|>") == "Refund sent."
    assert _cut_at_stop("no marker here", None) == "no marker here"


def test_packed_batch_is_sized_in_tokens() -> None:
    from tuneforge.config import PACKED_BATCH_TOKENS, parse_config
    from tuneforge.errors import ConfigError

    base = {"data": {"train": "x.jsonl", "max_length": 256}, "task": {"name": "sft"}, "method": "full"}
    default = parse_config(base).training
    assert (default.batch_tokens, default.batch_size) == (PACKED_BATCH_TOKENS, PACKED_BATCH_TOKENS // 256)
    assert parse_config({**base, "training": {"batch_tokens": 1000}}).training.batch_size == 3  # 1000 // 256
    assert parse_config({**base, "training": {"batch_tokens": 10}}).training.batch_size == 1  # at least one row
    own = parse_config({**base, "training": {"batch_size": 5}}).training  # a row count the user chose stays
    assert (own.batch_size, own.batch_tokens) == (5, None)
    unpacked = parse_config({**base, "task": {"name": "sft", "packing": False}}).training
    assert (unpacked.batch_size, unpacked.batch_tokens) == (32, None)
    with pytest.raises(ConfigError, match="packs rows") as err:
        parse_config({**base, "task": {"name": "classification"}, "training": {"batch_tokens": 512}})
    assert err.value.key == "training.batch_tokens"
