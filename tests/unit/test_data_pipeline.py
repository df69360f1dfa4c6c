"""Data stage: readers keep file:line, cleaning counts each step, PII redaction, stratified seeded split, leakage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tuneforge.config import CleanConfig, ColumnsConfig
from tuneforge.data.clean import clean_examples, dedupe_key, normalize_text
from tuneforge.data.pii import redact
from tuneforge.data.report import fingerprint
from tuneforge.data.sources import read_records
from tuneforge.data.split import find_leakage, remove_leakage, stratified_split
from tuneforge.tasks.classification import Classification, ClassificationParams
from tuneforge.tasks.token_classification import TokenClassification, TokenClassificationParams, normalize_iob

CLS = Classification(ClassificationParams())
NER = TokenClassification(TokenClassificationParams())


def ex(text: str, label: str, src: str = "f:1") -> dict:
    return {"text": text, "label": label, "_src": src}


def test_readers_agree_across_formats(tmp_path: Path) -> None:
    rows = [{"text": "hello, world", "label": "a"}, {"text": 'say "hi"\nthere', "label": "b"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    for name in ("d.jsonl", "d.csv", "d.tsv", "d.parquet", "hf"):
        got = [r for r, _, _ in read_records(str(tmp_path / name), "auto", "classification")]
        assert [(r["text"], r["label"]) for r in got] == [(r["text"], r["label"]) for r in rows], name


def test_csv_line_numbers_count_embedded_newlines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"two\nlines",a\nthird,b\n')
    lines = [line for _, _, line in read_records(str(path), "auto", "classification")]
    assert lines == [3, 4]  # the second record starts on physical line 4


def test_conll_sentences_and_start_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- O\n\nJohn\tB-PER\nlives\tO\n\nin\tO\nRome\tB-LOC\n")
    got = list(read_records(str(path), "auto", "token_classification"))
    assert [r["tokens"] for r, _, _ in got] == [["John", "lives"], ["in", "Rome"]]
    assert [line for _, _, line in got] == [3, 6]


def test_iob1_is_normalised_to_iob2() -> None:
    assert normalize_iob(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == \
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]


def test_normalisation_and_dedupe_key() -> None:
    assert normalize_text("  Cafe\u0301   au\tlait \n") == "Café au lait"
    assert dedupe_key("How do I TRACK my order?") == dedupe_key("how do i track my order")


def test_cleaning_counts_each_step() -> None:
    rows = [ex("refund please", "refund"), ex("refund please", "refund"),  # exact duplicate
            ex("Refund   please!", "refund"),  # normalized duplicate
            ex("where is it", "track"), ex("where is it?", "cancel"),  # conflicting labels
            ex("   ", "track"), ex("cancel my order now", "cancel")]
    out, steps = clean_examples(rows, CLS, CleanConfig(), None)
    assert steps["exact_duplicates"] == 1
    assert steps["normalized_duplicates"] == 1
    assert steps["conflicting_labels"] == 2
    assert steps["empty_after_normalisation"] == 1
    assert [e["text"] for e in out] == ["refund please", "cancel my order now"]


def test_length_filter_uses_token_counts() -> None:
    rows = [ex("a", "x"), ex("a b c", "x"), ex("a b c d e f g", "y")]
    out, steps = clean_examples(rows, CLS, CleanConfig(min_tokens=2, max_tokens=5),
                                lambda exs: [len(e["text"].split()) for e in exs])
    assert [e["text"] for e in out] == ["a b c"]
    assert (steps["too_short"], steps["too_long"]) == (1, 1)


@pytest.mark.parametrize(("text", "tag"), [
    ("mail me at jane.doe@example.com today", "EMAIL"),
    ("call +44 20 7946 0958 please", "PHONE"),
    ("my IBAN is DE89370400440532013000", "IBAN"),
    ("card 4111 1111 1111 1111 was charged", "CARD"),
])
def test_pii_redaction(text: str, tag: str) -> None:
    counts: Counter[str] = Counter()
    out = redact(text, counts)
    assert f"[{tag}]" in out and counts[tag] == 1


def test_pii_leaves_ordinary_numbers_alone() -> None:
    text = "order #48213 arrived on 2024-05-01, 3 items for 19.99"
    assert redact(text) == text
    assert redact("card 4111 1111 1111 1112") == "card 4111 1111 1111 1112"  # fails the Luhn check


def test_stratified_split_is_seeded_and_keeps_proportions() -> None:
    rows = [ex(f"t{i}", "a" if i % 4 else "b") for i in range(400)]  # 300 a, 100 b
    s1 = stratified_split([dict(r) for r in rows], CLS, (0.8, 0.1, 0.1), seed=3)
    s2 = stratified_split([dict(r) for r in rows], CLS, (0.8, 0.1, 0.1), seed=3)
    s3 = stratified_split([dict(r) for r in rows], CLS, (0.8, 0.1, 0.1), seed=4)
    assert fingerprint(s1["test"]) == fingerprint(s2["test"]) != fingerprint(s3["test"])
    assert {k: len(v) for k, v in s1.items()} == {"train": 320, "validation": 40, "test": 40}
    assert Counter(e["label"] for e in s1["test"]) == {"a": 30, "b": 10}


def test_rare_class_lands_in_train_first() -> None:
    rows = [ex(f"t{i}", "common") for i in range(50)] + [ex("only one", "rare")]
    splits = stratified_split(rows, CLS, (0.8, 0.1, 0.1), seed=0)
    assert any(e["label"] == "rare" for e in splits["train"])


def test_leakage_found_and_removed_from_train() -> None:
    splits = {"train": [ex("Hello there", "a"), ex("unique", "a")], "validation": [ex("x", "a")],
              "test": [ex("hello there!", "a")]}
    assert find_leakage(splits, CLS)["train_in_test"] == 1
    cleaned = remove_leakage(splits, CLS)
    assert [e["text"] for e in cleaned["train"]] == ["unique"]
    assert len(cleaned["test"]) == 1  # the test set is never changed


def test_ner_parse_and_stratify_key() -> None:
    cols = ColumnsConfig()
    parsed = NER.parse({"tokens": ["Ann", "met", "Bo"], "tags": ["I-PER", "O", "B-PER"]}, cols, None)
    assert parsed["tags"] == ["B-PER", "O", "B-PER"]
    assert NER.label_key(parsed) == "PER"
    assert NER.labels_of(parsed) == ["PER", "PER"]


def test_multilabel_parse_splits_strings() -> None:
    task = Classification(ClassificationParams(multi_label=True))
    parsed = task.parse({"text": "t", "label": "b|a"}, ColumnsConfig(), None)
    assert parsed["label"] == ["a", "b"]


def test_folder_of_data_files_loads_like_a_hub_dataset(tmp_path: Path) -> None:
    """The hub code path (datasets.load_dataset) exercised offline on a local folder laid out like a hub repo."""
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    got = list(read_records(str(folder), "auto", "classification"))
    assert [r["text"] for r, _, _ in got] == ["a", "b"]
    assert got[0][1].endswith("repo[train]")


def test_hub_names_need_explicit_format_and_permission() -> None:
    from tuneforge.errors import ConfigError, DataError

    with pytest.raises(DataError, match="file not found"):  # a mistyped relative path is never sent to a hub
        list(read_records("someorg/somedata", "auto", "classification", allow_hub=True))
    with pytest.raises(ConfigError, match="hub access is off"):
        list(read_records("someorg/somedata", "hub", "classification", allow_hub=False))


def test_split_rounding_does_not_starve_small_classes() -> None:
    rows = [ex(f"t{c}-{i}", f"c{c}") for c in range(100) for i in range(9)]
    splits = stratified_split(rows, CLS, (0.8, 0.1, 0.1), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 720, "validation": 90, "test": 90}  # exact 10%
    rows = [ex(f"t{c}-{i}", f"c{c}") for c in range(150) for i in range(15)]
    splits = stratified_split(rows, CLS, (0.8, 0.1, 0.1), seed=0)
    assert len(splits["validation"]) == len(splits["test"]) == 225  # exactly 10% each
