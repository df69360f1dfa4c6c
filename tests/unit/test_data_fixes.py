"""Data-layer fixes: unknown NER tags, CoNLL tag lines and task inference, SFT answers lost to truncation,
whitespace kept for generative tasks, and characters the tokenizer cannot represent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED, base_config, write_jsonl
from tuneforge.config import CleanConfig, ColumnsConfig, parse_config
from tuneforge.data.clean import clean_examples
from tuneforge.data.coverage import coverage_warnings, tokenizer_coverage
from tuneforge.data.sources import infer_task, read_records
from tuneforge.errors import DataError
from tuneforge.tasks.base import RecordError
from tuneforge.tasks.classification import Classification, ClassificationParams
from tuneforge.tasks.sft import SFT, SFTParams
from tuneforge.tasks.token_classification import TokenClassification, TokenClassificationParams

NER = TokenClassification(TokenClassificationParams())
CLS = Classification(ClassificationParams())
CHAT = SFT(SFTParams(packing=False))
TINYSTORIES = SHARED / "models" / "tinystories-656k"

CODE_ANSWER = "def area(r):\r\n    \"\"\"Circle area.\"\"\"\r\n    return 3.14159 * r ** 2\r\n"
GSM8K_ANSWER = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72"


def chat(prompt: str, answer: str, src: str = "chat.jsonl:1") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "_src": src}


# ---- 4: a tag outside the run's labels is an error, not O ------------------------------------------------------

def test_unknown_ner_tag_names_file_and_line(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    good = {"tokens": ["Ann", "flew", "to", "Oslo"], "tags": ["B-PER", "O", "O", "B-LOC"], "_src": "ner.jsonl:1"}
    bad = {"tokens": ["Ann", "joined", "Acme"], "tags": ["B-PER", "O", "B-ORG"], "_src": "ner.jsonl:7"}
    encoded = NER.encode([good], tokenizer, ["LOC", "PER"], 32)
    assert len(encoded) == 1
    with pytest.raises(DataError) as caught:
        NER.encode([good, bad], tokenizer, ["LOC", "PER"], 32)
    message = str(caught.value)
    assert message.startswith("ner.jsonl:7: ") and "'B-ORG'" in message and "'Acme'" in message
    assert "data.labels" in message  # the fix


# ---- 10: CoNLL files are token classification; a bad tag names its own line ------------------------------------

def test_conll_bad_tag_names_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- O\n\nJohn\tB-PER\nlives\tO\nin\tO\nRome\tLOC\n")  # 'LOC' on line 6
    ((raw, _, first_line),) = read_records(str(path), "auto", "token_classification")
    assert first_line == 3 and set(raw) == {"tokens", "tags"}  # the line numbers are no column
    with pytest.raises(RecordError) as caught:
        NER.parse(raw, ColumnsConfig(), None)
    assert caught.value.line == 6 and "'LOC'" in str(caught.value)
    with pytest.raises(RecordError) as caught:
        NER.parse(raw | {"tags": ["B-PER", "O", "O", "B-ORG"]}, ColumnsConfig(), ["PER", "LOC"])
    assert caught.value.line is None  # a plain dict (JSONL record) has no per-token lines: the record's own line


def test_task_is_inferred_from_format_and_record() -> None:
    assert infer_task("conll", None) == "token_classification"
    assert infer_task("jsonl", {"tokens": ["a"], "tags": ["O"]}) == "token_classification"
    assert infer_task("jsonl", {"text": "a", "label": "b"}) == "classification"
    assert infer_task("csv", {"tokens": "a b", "tags": "O O"}) == "classification"  # strings are not token lists
    assert infer_task("jsonl", {"prompt": "q", "completion": "a"}) == "sft"
    assert infer_task("jsonl", {"messages": []}) == "sft"
    assert infer_task("jsonl", {"prompt": "q", "chosen": "a", "rejected": "b"}) == "preference"


# ---- 11: generative tasks keep the text they train on ---------------------------------------------------------

def test_generative_tasks_declare_that_they_keep_whitespace() -> None:
    from tuneforge.tasks import TASKS

    keeps = {name for name in ("classification", "token_classification", "sft", "preference", "reward", "rlhf",
                               "distillation") if TASKS.get(name).preserves_whitespace}
    assert keeps == {"sft", "preference", "reward", "rlhf", "distillation"}


def test_sft_cleaning_keeps_code_and_answer_lines() -> None:
    rows = [chat("Write  a function\r\nfor the area.", CODE_ANSWER, "c.jsonl:1"),
            chat("Natalia sold clips.", GSM8K_ANSWER, "c.jsonl:2"),
            chat("Natalia   sold clips.", GSM8K_ANSWER.replace("\n", "\n\n"), "c.jsonl:3")]  # spacing-only variant
    out, steps = clean_examples(rows, CHAT, CleanConfig(dedupe="exact"), None)
    assert out[0]["messages"][1]["content"] == CODE_ANSWER.replace("\r\n", "\n")  # indentation and lines kept
    assert out[0]["messages"][0]["content"] == "Write  a function\nfor the area."
    assert out[1]["messages"][1]["content"] == GSM8K_ANSWER
    assert steps["exact_duplicates"] == 1 and len(out) == 2  # dedupe still compares whitespace-normalised keys


def test_classification_cleaning_still_collapses_whitespace() -> None:
    out, _ = clean_examples([{"text": "refund\n  my\torder ", "label": "r", "_src": "f:1"}], CLS, CleanConfig(),
                            None)
    assert out[0]["text"] == "refund my order"


# ---- 5: SFT examples whose answer truncation cuts away are counted ------------------------------------------

@pytest.fixture()
def causal_tokenizer(tiny_causal: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_causal))
    CHAT.prepare_tokenizer(tokenizer)
    return tokenizer


def test_untrainable_marks_answers_lost_to_truncation(causal_tokenizer: Any) -> None:
    long_prompt = " ".join(f"word{i}" for i in range(200))
    examples = [chat("short question", "short answer"), chat(long_prompt, "an answer that is cut away")]
    assert CHAT.untrainable(examples, causal_tokenizer, 64) == [None, "answer_truncated_away"]
    assert CHAT.untrainable(examples, causal_tokenizer, 4096) == [None, None]


def _sft_config(tmp_path: Path, model: Path, rows: list[dict], max_length: int = 48, **clean: Any) -> Any:
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = base_config(model, data, tmp_path / "runs", task={"name": "sft", "packing": False})
    cfg["data"].update(max_length=max_length, clean={"redact_pii": False, **clean})
    return parse_config(cfg)


def test_prepare_counts_and_warns_about_truncated_answers(tmp_path: Path, tiny_causal: Path,
                                                         causal_tokenizer: Any) -> None:
    from tuneforge.data.prepare import prepare_data

    long_prompt = " ".join(f"word{i}" for i in range(120))
    rows = [{"prompt": f"question {i}", "completion": f"Line one {i}.\n  Line two."} for i in range(36)]
    rows += [{"prompt": f"{long_prompt} {i}", "completion": "lost"} for i in range(4)]  # 10% of the data
    data = prepare_data(_sft_config(tmp_path, tiny_causal, rows), CHAT, causal_tokenizer)
    steps = data.report["cleaning"]["train"]
    assert steps["answer_truncated_away"] == 4 and steps["output"] == 36 and list(steps)[-1] == "output"
    assert not any("word0" in CHAT.text_of(e) for split in data.splits.values() for e in split)
    assert any("4 of 40 training examples (10.0%) removed: answer truncated away" in w
               for w in data.report["warnings"])
    kept = data.splits["train"]
    assert len(CHAT.encode(kept, causal_tokenizer, [], 48)) == len(kept)  # nothing left for encode to drop
    assert all(e["messages"][1]["content"].endswith(".\n  Line two.") for e in kept)  # answer lines kept

    few = rows[:36] + rows[36:37] + [{"prompt": f"more {i}", "completion": "ok"} for i in range(70)]  # < 1%
    data = prepare_data(_sft_config(tmp_path, tiny_causal, few), CHAT, causal_tokenizer)
    assert data.report["cleaning"]["train"]["answer_truncated_away"] == 1
    assert not any("truncated" in w for w in data.report["warnings"])


# ---- 13: characters the tokenizer cannot represent ----------------------------------------------------------

def _tokenizer_without(missing: str) -> Any:
    """A character-level BPE tokenizer built here whose alphabet lacks `missing` (each becomes [UNK])."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = [chr(c) for c in range(32, 127) if chr(c) not in missing] + ["\n"]
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.train_from_iterator(["".join(alphabet)], trainers.BpeTrainer(
        vocab_size=len(alphabet) + 1, special_tokens=["[UNK]"], initial_alphabet=alphabet))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]")


def test_coverage_counts_characters_the_tokenizer_loses() -> None:
    tokenizer = _tokenizer_without("/=#")
    examples = [chat("How many clips?", GSM8K_ANSWER, f"g.jsonl:{i}") for i in range(1, 4)]
    examples.append(chat("Say hi.", "Hi there, friend!", "g.jsonl:4"))
    coverage = tokenizer_coverage(examples, CHAT, tokenizer)
    assert coverage is not None
    assert coverage["characters_lost"] == {"=": 12, "/": 6, "#": 12}
    assert (coverage["examples_checked"], coverage["examples_affected"], coverage["sampled"]) == (4, 3, False)
    assert coverage["examples"][0].startswith("g.jsonl:1: loses ")
    (warning,) = coverage_warnings(coverage)
    assert "'='×12" in warning and "3 of 4 training examples" in warning

    sampled = tokenizer_coverage(examples * 5, CHAT, tokenizer, seed=1, sample_size=6)
    assert sampled["examples_checked"] == 6 and sampled["sampled"] is True
    assert "6 sampled of 20" in coverage_warnings(sampled)[0]


def test_coverage_finds_nothing_when_the_tokenizer_covers_the_text(tiny_causal: Path, tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    byte_level = AutoTokenizer.from_pretrained(str(tiny_causal))  # byte-level BPE: every character survives
    examples = [chat("Write code", CODE_ANSWER.replace("\r\n", "\n")), chat("Math", GSM8K_ANSWER)]
    assert tokenizer_coverage(examples, CHAT, byte_level)["examples_affected"] == 0
    uncased = AutoTokenizer.from_pretrained(str(tiny_bert))  # lowercasing and accent stripping are by design
    rows = [{"text": "Café RÉSUMÉ, order #12", "label": "a"}, {"text": "thanks 😀", "label": "b", "_src": "f:2"}]
    coverage = tokenizer_coverage(rows, CLS, uncased)
    assert coverage["characters_lost"] == {"😀": 1} and coverage["examples"][0].startswith("f:2: ")


def test_data_report_counts_lost_characters_and_warns(tmp_path: Path, tiny_causal: Path) -> None:
    from tuneforge.data.prepare import prepare_data

    tokenizer = _tokenizer_without("/=#")
    CHAT.prepare_tokenizer(tokenizer)
    rows = [{"prompt": f"Question {i}?", "completion": f"{i}/2 = {i / 2}\n#### {i / 2}"} for i in range(30)]
    # one token a character: the prompt needs room
    data = prepare_data(_sft_config(tmp_path, tiny_causal, rows, max_length=256), CHAT, tokenizer)
    coverage = data.report["tokenizer_coverage"]
    assert set(coverage["characters_lost"]) == {"/", "=", "#"}
    assert coverage["examples_affected"] == coverage["examples_checked"] == len(data.splits["train"])
    assert any("cannot represent" in w and "'#'" in w for w in data.report["warnings"])


@pytest.mark.skipif(not TINYSTORIES.is_dir(), reason="needs ../shared/models/tinystories-656k")
def test_tinystories_tokenizer_loses_gsm8k_operators() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(TINYSTORIES))
    coverage = tokenizer_coverage([chat("How many clips?", GSM8K_ANSWER)], CHAT, tokenizer)
    assert {"/", "=", "#"} <= set(coverage["characters_lost"])
    assert "\n" not in coverage["characters_lost"] and "N" not in coverage["characters_lost"]


# ---- 13: `data preview` shows the prepared text, not the raw file ----------------------------------------------

def test_preview_shows_the_cleaned_text_that_trains(cli, tmp_path: Path, tiny_causal: Path) -> None:
    import yaml

    rows = [{"prompt": f"mail jane.doe{i}@example.com about order {i}", "completion": f"Done {i}.\n  Step two."}
            for i in range(20)]
    cfg = base_config(tiny_causal, write_jsonl(tmp_path / "chat.jsonl", rows), tmp_path / "runs",
                      task={"name": "sft"})
    cfg["data"].update(max_length=128, clean={"redact_pii": True})
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for flags in ((), ("--masks",)):
        res = cli("data", "preview", path, "--n", "2", *flags)
        assert res.code == 0, res.err
        assert "[EMAIL]" in res.out and "@example.com" not in res.out  # redacted, as it trains
        assert "chat.jsonl:" in res.out


def test_run_report_lists_the_data_warnings(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tuneforge.evaluation.report import write_report
    from tuneforge.tasks.base import EvalResult

    cfg = SimpleNamespace(name="r", task=SimpleNamespace(name="sft"), method=SimpleNamespace(name="full"),
                          model=SimpleNamespace(path="m"))
    train_info = {"trainable_params": 10, "total_params": 10, "steps": 2, "train_seconds": 1.0}
    data_report = {"rows": {"train": 8, "validation": 1, "test": 1}, "warnings": ["the tokenizer cannot represent"]}
    path = write_report(tmp_path / "report.md", cfg, [{"model": "full", "score": 1.0}], "loss", "rouge_l",
                        EvalResult({"loss": 1.0}), {}, train_info, data_report, [])
    assert "- **Warning:** the tokenizer cannot represent" in path.read_text()


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_batched_masks_equal_one_by_one(causal_tokenizer: Any, template: str) -> None:
    from tuneforge.tasks.chat_templates import BUILTIN, tokenize_with_masks

    chats = [chat(f"question {i} " * (i % 7), f"Answer {i}.\n  Second line.")["messages"] for i in range(12)]
    for max_length in (16, 40, 512):
        one_by_one = [tokenize_with_masks(causal_tokenizer, BUILTIN[template], [c], max_length)[0] for c in chats]
        assert tokenize_with_masks(causal_tokenizer, BUILTIN[template], chats, max_length) == one_by_one
