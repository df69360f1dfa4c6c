"""Bad inputs end to end: every user mistake exits 2, names where it is, and never shows a traceback.

Each case checks, through the real CLI:
  1. exit code 2,
  2. the location on stderr: `file:line` for data errors, the dotted key and/or the config file otherwise,
  3. no "Traceback" on stdout or stderr,
  4. the fix hint, where the code offers one.

Most cases fail before any model loads (only the tiny tokenizer is read), so they run in-process through the
`cli` fixture. One tiny real run (2 steps) is trained once for the module and shared by the run-folder cases;
two tests run the real console script in a subprocess to prove the process exit code and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_user_error, base_config, make_config, make_intent_rows, write_yaml

# ---- helpers -----------------------------------------------------------------------------------------------


def good_intents(n: int = 2) -> list[str]:
    return [json.dumps(r) for r in make_intent_rows(n_per_label=4)[:n]]


def good_ner(n: int = 2) -> list[str]:
    rows = [{"tokens": ["Alice", "flew", "to", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
            {"tokens": ["Bob", "lives", "in", "Oslo"], "tags": ["B-PER", "O", "O", "B-LOC"]}]
    return [json.dumps(r) for r in rows[:n]]


def lines(*parts: str) -> bytes:
    return "".join(p + "\n" for p in parts).encode("utf-8")


NER = {"task": {"name": "token_classification"}}
INTENT_LABELS = {"data": {"labels": ["refund", "track", "cancel"]}}
NER_LABELS = {**NER, "data": {"labels": ["PER", "LOC"]}}

# ---- data errors: `tuneforge train` on a config whose data file is bad -------------------------------------
# (file name, file bytes, config extras, needles that must be on stderr, fix hint)

DATA_CASES = [
    pytest.param("bad.jsonl", lines(*good_intents(2), '{"text": "refund order 12", "label": '), {},
                 ["bad.jsonl:3", "malformed JSON"], "each line must be one JSON object",
                 id="jsonl-malformed-line"),
    pytest.param("bad.jsonl", lines(*good_intents(1), '["where is my order", "track"]'), {},
                 ["bad.jsonl:2", "expected a JSON object, got list"], "one JSON object",
                 id="jsonl-line-is-list"),
    pytest.param("bad.jsonl",
                 lines(*good_intents(2)) + b'{"text": "caf\xe9", "label": "x"}\n' + lines(*good_intents(1)),
                 {}, ["bad.jsonl:3", "invalid UTF-8"], "re-save the file as UTF-8",
                 id="invalid-utf8-line-3"),
    pytest.param("bad.json", b'[\n{"text": "a", "label": "refund"},\n{"text": "oops" "label": 1}\n]\n',
                 {}, ["bad.json:3", "malformed JSON"], "JSON list of objects",
                 id="json-array-malformed-line"),
    pytest.param("bad.csv", lines("text,label", "refund it,refund", "track it,track,extra", "cancel,cancel"),
                 {}, ["bad.csv:3", "more cells than the 2 header columns"], "quote fields",
                 id="csv-row-too-many-cells"),
    pytest.param("empty.csv", b"", {},
                 ["empty.csv:1", "the file is empty"], "the first row must name the columns",
                 id="csv-empty-file"),
    pytest.param("bad.jsonl", lines(*good_intents(1), '{"sentence": "track my order", "label": "track"}'), {},
                 ["bad.jsonl:2", "missing column 'text'", "columns found: sentence, label"],
                 "data.columns.text",
                 id="missing-text-column"),
    pytest.param("bad.jsonl", lines(*good_intents(2), '{"text": "track my order", "intent": "track"}'), {},
                 ["bad.jsonl:3", "missing column 'label'"], "data.columns.label",
                 id="missing-label-column"),
    pytest.param("bad.jsonl", lines(*good_intents(1), '{"text": "   ", "label": "track"}'), {},
                 ["bad.jsonl:2", "empty text in column 'text'"], "--skip-invalid",
                 id="empty-text"),
    pytest.param("bad.jsonl", lines(*good_intents(2), '{"text": "track my order", "label": ""}'), {},
                 ["bad.jsonl:3", "empty label in column 'label'"], "--skip-invalid",
                 id="empty-label"),
    pytest.param("bad.jsonl", lines(*good_intents(2), '{"text": "refund it", "label": "refnd"}'),
                 INTENT_LABELS,
                 ["bad.jsonl:3", "unknown label 'refnd'"], "use one of data.labels (refund, track, cancel)",
                 id="unknown-label-with-data-labels"),
    pytest.param("bad.jsonl", lines(*good_intents(1), '{"text": "x", "label": ["refund", "track"]}'), {},
                 ["bad.jsonl:2", "but the task is single-label"], "task.multi_label: true",
                 id="single-label-task-list-label"),
    pytest.param("bad.jsonl", lines(*good_intents(2), '{"text": "no label", "label": ""}',
                                    '{"label": "track"}', '{"text": "x", "label": null}'), {},
                 ["bad.jsonl:3", "empty label", "(2 more invalid record(s); pass --skip-invalid"],
                 "--skip-invalid",
                 id="several-invalid-records-counted"),
    pytest.param("ner.jsonl", lines(*good_ner(1), '{"tokens": ["Cy", "in", "Lima"], "tags": ["B-PER", "O"]}'),
                 NER,
                 ["ner.jsonl:2", "3 tokens but 2 tags"], "one tag per token",
                 id="ner-tokens-tags-length-mismatch"),
    pytest.param("ner.jsonl", lines(*good_ner(2), '{"tokens": ["Carla", "in"], "tags": ["PER", "O"]}'),
                 NER, ["ner.jsonl:3", "tag 'PER' is not IOB"], "convert the tags to IOB",
                 id="ner-tag-without-iob-prefix"),
    pytest.param("ner.jsonl", lines(*good_ner(2), '{"tokens": ["Cy", "Acme"], "tags": ["B-PER", "B-ORG"]}'),
                 NER_LABELS, ["ner.jsonl:3", "unknown entity type 'ORG'"],
                 "use one of data.labels (PER, LOC)",
                 id="ner-unknown-entity-type"),
    pytest.param("ner.conll", lines("Alice\tB-PER", "flew\tO", "", "Bob\tB-PER", "Paris", "", ""), NER,
                 ["ner.conll:5", "expected a token and a tag", "'Paris'"], "TOKEN<TAB>TAG",
                 id="conll-line-without-tag"),
    pytest.param("ner.conll", lines("Alice\tB-PER", "flew\tO", "", "Bob\tB-PER", "lives\tO", "in\tO",
                                    "Paris\tLOC", ""), NER,
                 ["ner.conll:7", "tag 'LOC' is not IOB"], "convert the tags to IOB",
                 id="conll-bad-tag-names-its-own-line"),
    pytest.param("train.xyz", lines('{"text": "a", "label": "b"}'), {},
                 ["train.xyz", "cannot tell the format", "'.xyz'"], "set data.format",
                 id="unknown-file-extension"),
    pytest.param("empty.jsonl", b"\n\n", {},
                 ["empty.jsonl", "no records found"], "add examples",
                 id="file-with-zero-records"),
]


@pytest.mark.parametrize(("filename", "content", "extra", "needles", "fix"), DATA_CASES)
def test_bad_data_file(cli, tiny_bert: Path, tmp_path: Path, filename: str, content: bytes, extra: dict,
                       needles: list[str], fix: str) -> None:
    data = tmp_path / filename
    data.write_bytes(content)
    res = cli("train", make_config(tmp_path, tiny_bert, data, **extra), "--quiet")
    assert_user_error(res, *needles, fix=fix)
    assert not (tmp_path / "runs" / "t").exists(), "a failed data check must not leave a run folder behind"


def test_missing_data_file(cli, tiny_bert: Path, tmp_path: Path) -> None:
    res = cli("train", make_config(tmp_path, tiny_bert, tmp_path / "nope" / "train.jsonl"), "--quiet")
    assert_user_error(res, "train.jsonl", "file not found", fix="check data.train")


def test_data_prepare_reports_location_too(cli, tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(lines(*good_intents(3), '{"text": "refund", "label": ["refund"]}'))
    res = cli("data", "prepare", make_config(tmp_path, tiny_bert, data))
    assert_user_error(res, "bad.jsonl:4", "single-label", fix="task.multi_label: true")


# ---- `data inspect` ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "needles", "fix"), [
    pytest.param(lines('{"text": "refund my lamp", "label": "refund"}', '{"text": "track', '{"text": "x"}'),
                 ["bad.jsonl:2", "malformed JSON"], "one JSON object", id="inspect-malformed-jsonl"),
    pytest.param(lines('{"text": "refund my lamp", "label": "refund"}', '{"text": "where is it"}'),
                 ["bad.jsonl:2", "missing column 'label'"], "data.columns.label", id="inspect-missing-label"),
])
def test_data_inspect_bad_file(cli, tmp_path: Path, content: bytes, needles: list[str], fix: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(content)
    assert_user_error(cli("data", "inspect", data), *needles, fix=fix)


def test_data_inspect_reads_conll_as_token_classification(cli, tmp_path: Path) -> None:
    data = tmp_path / "x.conll"
    data.write_bytes(lines("Alice\tB-PER", "flew\tO", "to\tO", "Paris\tB-LOC", "", "Bob\tB-PER", "left\tO"))
    res = cli("data", "inspect", data)  # no --task: the format says what it is
    assert res.code == 0, res.err
    shown = " ".join(res.out.split())  # the console wraps long lines
    assert "format conll, task token_classification, 2 records" in shown and "all records valid" in shown
    data.write_bytes(lines("Alice\tB-PER", "flew\tO", "", "Bob\tB-PER", "left\tO", "Oslo\tB-PLACE",
                           "today\tX-DATE"))
    assert_user_error(cli("data", "inspect", data), "x.conll:7", "tag 'X-DATE' is not IOB",
                      fix="convert the tags to IOB")


# ---- config errors -----------------------------------------------------------------------------------------
# (edit applied to the base config, needles, fix hint); the config file name is checked as well.

def _set(path: str, value: Any):
    def edit(cfg: dict) -> None:
        node = cfg
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return edit


def _drop(path: str):
    def edit(cfg: dict) -> None:
        node = cfg
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        del node[last]
    return edit


CONFIG_CASES = [
    pytest.param(_set("trainig", {"epochs": 1}), ["key 'trainig'", "unknown key"],
                 "did you mean 'training'?", id="unknown-top-level-key"),
    pytest.param(_set("data.colums", {"text": "sentence"}), ["key 'data.colums'", "unknown key"],
                 "did you mean 'columns'?", id="misspelled-nested-key"),
    pytest.param(_set("method", {"name": "lora", "rank": 8}), ["key 'method.rank'", "unknown key"],
                 "valid keys here: alpha, dropout, name, r, target_modules", id="misspelled-method-param"),
    pytest.param(_set("method", {"name": "lorra"}), ["key 'method.name'", "unknown method 'lorra'"],
                 "did you mean 'lora'?", id="unknown-method-name"),
    pytest.param(_set("task", {"name": "summarization"}), ["key 'task.name'", "unknown task 'summarization'"],
                 "classification", id="unknown-task-name"),
    pytest.param(_set("task", "clasification"), ["key 'task.name'", "unknown task 'clasification'"],
                 "did you mean 'classification'?", id="task-shorthand-misspelled"),
    pytest.param(_set("training.batch_size", "abc"), ["key 'training.batch_size'", "(got 'abc')"],
                 "tuneforge config schema", id="wrong-type-batch-size"),
    pytest.param(_set("training.batch_size", 0),
                 ["key 'training.batch_size'", "greater than or equal to 1", "(got 0)"],
                 "tuneforge config schema", id="out-of-range-batch-size"),
    pytest.param(_set("data.split", {"train": 0.8, "validation": 0.3, "test": 0.1}),
                 ["key 'data.split'", "split ratios must add up to 1.0, got 1.2"], None,
                 id="split-ratios-not-one"),
    pytest.param(_drop("data.train"), ["key 'data.train'", "required key is missing"],
                 "tuneforge config init", id="missing-data-train"),
    pytest.param(_set("data.clean", {"dedupe": "fuzzy"}), ["key 'data.clean.dedupe'", "(got 'fuzzy')"],
                 "tuneforge config schema", id="bad-literal-value"),
]


@pytest.mark.parametrize(("edit", "needles", "fix"), CONFIG_CASES)
def test_bad_config_key(cli, tiny_bert: Path, intent_file: Path, tmp_path: Path, edit, needles: list[str],
                        fix: str | None) -> None:
    cfg = base_config(tiny_bert, intent_file, tmp_path / "runs")
    edit(cfg)
    path = write_yaml(tmp_path / "broken.yaml", cfg)
    assert_user_error(cli("train", path, "--quiet"), "broken.yaml", *needles, fix=fix)
    # `config validate` reports the same problem the same way
    assert_user_error(cli("config", "validate", path), "broken.yaml", *needles, fix=fix)


def test_invalid_yaml_names_the_line(cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\ndata:\n  train: data.jsonl\n    max_length: 32\ntask: classification\n")
    assert_user_error(cli("train", path), "bad.yaml:4", "invalid YAML", fix="check indentation and quoting")


def test_config_file_not_found(cli, tmp_path: Path) -> None:
    assert_user_error(cli("train", tmp_path / "nope.yaml"), "nope.yaml", "config file not found",
                      fix="tuneforge config init")


def test_config_that_is_a_list(cli, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: t\n- data: {train: x.jsonl}\n")
    assert_user_error(cli("train", path), "list.yaml", "the config must be a mapping",
                      fix="tuneforge config init")


def test_config_not_utf8(cli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    res = cli("config", "validate", path)
    assert_user_error(res, "latin1.yaml", "not UTF-8", fix="save the file as UTF-8")


def test_override_without_equals(cli, tiny_bert: Path, intent_file: Path, tmp_path: Path) -> None:
    res = cli("train", make_config(tmp_path, tiny_bert, intent_file), "--set", "training.epochs")
    assert_user_error(res, "override 'training.epochs' is not KEY=VALUE", fix="--set training.epochs=1")


def test_override_with_unknown_key(cli, tiny_bert: Path, intent_file: Path, tmp_path: Path) -> None:
    res = cli("train", make_config(tmp_path, tiny_bert, intent_file), "--set", "training.epoch=1")
    assert_user_error(res, "run.yaml", "key 'training.epoch'", fix="did you mean 'epochs'?")


def test_config_init_over_existing_file(cli, tmp_path: Path) -> None:
    existing = tmp_path / "tuneforge.yaml"
    existing.write_text("# mine\n")
    res = cli("config", "init", "--out", existing)
    assert_user_error(res, "tuneforge.yaml", "file exists", fix="--force")
    assert existing.read_text() == "# mine\n", "the existing file must be left alone"


def test_config_init_unknown_task(cli, tmp_path: Path) -> None:
    res = cli("config", "init", "--task", "summarization", "--out", tmp_path / "x.yaml")
    assert_user_error(res, "key '--task'", "no starter for task 'summarization'", fix="classification")


# ---- model path --------------------------------------------------------------------------------------------

def test_model_path_does_not_exist(cli, intent_file: Path, tmp_path: Path) -> None:
    res = cli("train", make_config(tmp_path, tmp_path / "no-such-model", intent_file), "--quiet")
    assert_user_error(res, "model.path", "no-such-model", "does not exist", fix="give a local model folder")


def test_model_path_without_config_json(cli, intent_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "weights.txt").write_text("nothing here")
    res = cli("train", make_config(tmp_path, folder, intent_file), "--quiet")
    assert_user_error(res, "model.path", "not-a-model", "has no config.json",
                      fix="folder that holds config.json")


# ---- positive control: --skip-invalid turns the same kind of bad file into a success, with counts ---------

def test_skip_invalid_drops_and_counts(cli, tiny_bert: Path, tmp_path: Path) -> None:
    rows = [json.dumps(r) for r in make_intent_rows()]
    bad = ['{"text": "no label", "label": ""}', '{"label": "track"}', '{"text": "two", "label": ["a", "b"]}']
    data = tmp_path / "mixed.jsonl"
    data.write_bytes(lines(*rows[:10], bad[0], *rows[10:50], bad[1], *rows[50:], bad[2]))
    cfg = make_config(tmp_path, tiny_bert, data)

    failed = cli("data", "prepare", cfg)
    assert_user_error(failed, "mixed.jsonl:11", "empty label", "(2 more invalid record(s)",
                      fix="--skip-invalid")

    out = tmp_path / "prepared"
    res = cli("data", "prepare", cfg, "--skip-invalid", "--out", out)
    assert res.code == 0, f"{res.out}\n{res.err}"
    assert "Traceback" not in res.out + res.err
    assert "invalid" in res.out
    report = json.loads((out / "report.json").read_text())
    (source,) = report["sources"].values()
    assert source["records"] == len(rows) + 3
    assert source["invalid"] == 3
    assert any("mixed.jsonl:11" in e for e in source["invalid_examples"]), source["invalid_examples"]


# ---- the real console script: process exit code 2 and no traceback -----------------------------------------

def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "tuneforge"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tuneforge.cli.main"]


def _run_process(args: list[Any], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=180,
                          check=False)


def test_console_script_data_error_exit_code(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(lines(*good_intents(2), '{"text": "refund order 12", "label": '))
    cfg = make_config(tmp_path, tiny_bert, data)
    proc = _run_process([*_console_script(), "train", cfg, "--quiet"], tmp_path)
    shown = f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    assert "bad.jsonl:3" in proc.stderr and "malformed JSON" in proc.stderr, shown


def test_module_entry_point_config_error_exit_code(tiny_bert: Path, intent_file: Path,
                                                   tmp_path: Path) -> None:
    cfg = base_config(tiny_bert, intent_file, tmp_path / "runs")
    cfg["data"]["colums"] = {"text": "text"}
    path = write_yaml(tmp_path / "broken.yaml", cfg)
    proc = _run_process([sys.executable, "-m", "tuneforge.cli.main", "config", "validate", path], tmp_path)
    shown = f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    assert "broken.yaml" in proc.stderr and "data.colums" in proc.stderr, shown
    assert "did you mean 'columns'" in proc.stderr, shown
