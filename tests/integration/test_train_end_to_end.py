"""A whole run through the CLI on tiny models: the run folder holds everything, and the run is usable after."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import base_config, make_intent_rows, write_jsonl, write_yaml


@pytest.fixture(scope="module")
def finished_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One classification run with MLflow and both baselines on, shared by the assertions below."""
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("e2e")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(40))
    cfg = base_config(tiny_bert, data, tmp / "runs", name="intents",
                      training={"epochs": 15, "eval_steps": 12, "learning_rate": 5e-3,
                                "early_stopping": {"patience": None}},
                      tracking={"mlflow": True, "registered_name": "intent-model"},
                      evaluation={"baselines": ["linear_probe", "zero_shot"]})
    tuneforge.train(parse_config(cfg), quiet=True)
    return tmp / "runs" / "intents"


def test_run_folder_is_complete(finished_run: Path) -> None:
    for name in ("config.yaml", "data/report.json", "data/train.jsonl", "data/test.jsonl", "metrics.json",
                 "history.json", "environment.json", "report.md", "README.md", "model/tuneforge.json",
                 "model/model.safetensors", "plots/learning_curve.png", "plots/confusion_matrix.png",
                 "plots/per_class_f1.png", "run.json"):
        assert (finished_run / name).is_file(), name
    assert not (finished_run / "checkpoints" / ".staging").exists()  # atomic writes left nothing behind
    report = json.loads((finished_run / "data" / "report.json").read_text())
    assert set(report["fingerprints"]) == {"train", "validation", "test"}
    assert all(len(v) == 64 for v in report["fingerprints"].values())
    env = json.loads((finished_run / "environment.json").read_text())
    assert env["packages"]["torch"].startswith("2.13") and env["torch_threads"] >= 1


def test_model_learned_and_beats_chance(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8  # three keyword-separable intents; chance is 0.33
    assert set(metrics["baselines"]) == {"linear_probe", "zero_shot"}
    tuned = metrics["comparison"][-1]
    assert tuned["key"] == "fine_tuned" and "gain" in tuned and "p_value" in tuned
    assert tuned["ci_low"] <= tuned["score"] <= tuned["ci_high"]
    card = (finished_run / "README.md").read_text()
    assert card.startswith("---\n") and "model-index" in card and "base_model" in card


def test_mlflow_run_and_registered_model(finished_run: Path) -> None:
    run = json.loads((finished_run / "run.json").read_text())
    tracking = run["tracking"]
    assert tracking["registered_model"] == {"name": "intent-model", "version": 1}
    db = finished_run.parent / "mlflow.db"
    with sqlite3.connect(db) as con:
        versions = con.execute("select name, version, run_id from model_versions").fetchall()
        logged = {r[0] for r in con.execute("select key from metrics where run_uuid=?", (tracking["run_id"],))}
    assert versions == [("intent-model", 1, tracking["run_id"])]
    assert {"test_accuracy", "eval_loss", "loss"} <= logged


def test_predict_cli_single_and_file(finished_run: Path, cli, tmp_path: Path) -> None:
    res = cli("predict", finished_run, "please refund order #1234")
    assert res.code == 0, res.err
    assert json.loads(res.out)["label"] in {"refund", "track", "cancel"}
    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "cancel order #1", "id": 1}, {"text": "where is it", "id": 2}])
    res = cli("predict", finished_run, "--file", inp, "--out", tmp_path / "out.jsonl")
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2] and all("label" in r["prediction"] for r in rows)


def test_runs_list_show_compare(finished_run: Path, cli) -> None:
    res = cli("runs", "list", "--dir", finished_run.parent)
    assert res.code == 0 and "intents" in res.out and "finished" in res.out
    res = cli("runs", "show", finished_run)
    assert res.code == 0 and '"accuracy"' in res.out
    res = cli("runs", "compare", finished_run, finished_run)
    assert res.code == 0 and res.out.count("intents") == 2


def test_python_api_load_run_predicts_like_cli(finished_run: Path) -> None:
    import tuneforge

    run = tuneforge.load_run(finished_run)
    preds = run.predict(["please refund order #1234", "cancel order #77 now"])
    assert [p["label"] for p in preds] == [p["label"] for p in tuneforge.predict(finished_run, [
        "please refund order #1234", "cancel order #77 now"])]
    assert abs(sum(preds[0]["top"].values()) - 1.0) < 1e-3


def test_token_classification_run(tiny_bert: Path, ner_file: Path, tmp_path: Path, cli) -> None:
    cfg = base_config(tiny_bert, ner_file, tmp_path / "runs", name="ner", task={"name": "token_classification"},
                      training={"epochs": 12, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}},
                      evaluation={"baselines": ["linear_probe"]})
    res = cli("train", write_yaml(tmp_path / "ner.yaml", cfg), "--quiet")
    assert res.code == 0, res.err
    metrics = json.loads((tmp_path / "runs" / "ner" / "metrics.json").read_text())
    assert metrics["primary_metric"] == "f1"
    assert metrics["test"]["f1"] > 0.5  # names and places in a fixed frame: easy, chance is ~0
    assert set(metrics["per_class"]) == {"PER", "LOC"}
    assert "linear_probe" in metrics["baselines"]
    res = cli("predict", tmp_path / "runs" / "ner", "Alice flew to Oslo")
    assert res.code == 0, res.err
    assert len(json.loads(res.out)["tags"]) == 4


def test_class_weights_and_decoder_model(tiny_llama: Path, intent_file: Path, tmp_path: Path, cli) -> None:
    cfg = base_config(tiny_llama, intent_file, tmp_path / "runs", name="llama", method={"name": "lora"},
                      training={"epochs": 1, "class_weights": True, "learning_rate": 5e-3})
    res = cli("train", write_yaml(tmp_path / "c.yaml", cfg), "--quiet")
    assert res.code == 0, res.err
    metrics = json.loads((tmp_path / "runs" / "llama" / "metrics.json").read_text())
    assert 0 < metrics["train"]["trainable_params"] < metrics["train"]["total_params"]


def test_multi_label_run(tiny_bert: Path, tmp_path: Path, cli) -> None:
    rows = []
    for i in range(120):
        tags = [t for t, on in (("refund", i % 2 == 0), ("urgent", i % 3 == 0)) if on] or ["other"]
        words = (["refund my order"] if "refund" in tags else ["where is my parcel"]) + \
                (["right now asap"] if "urgent" in tags else ["when you can"])
        rows.append({"text": f"{' '.join(words)} {i}", "label": "|".join(tags)})
    data = write_jsonl(tmp_path / "ml.jsonl", rows)
    cfg = base_config(tiny_bert, data, tmp_path / "runs", name="ml", task={"name": "classification",
                                                                          "multi_label": True},
                      training={"epochs": 10, "learning_rate": 5e-3, "early_stopping": {"patience": None}})
    res = cli("train", write_yaml(tmp_path / "ml.yaml", cfg), "--quiet")
    assert res.code == 0, res.err
    metrics = json.loads((tmp_path / "runs" / "ml" / "metrics.json").read_text())
    assert metrics["test"]["micro_f1"] > 0.7  # two independent keyword-marked labels
    res = cli("predict", tmp_path / "runs" / "ml", "refund my order right now asap")
    assert res.code == 0, res.err
    assert set(json.loads(res.out)["labels"]) <= {"refund", "urgent", "other"}
