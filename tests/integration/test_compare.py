"""`tuneforge compare`: baselines, fine-tuned runs and their retrieval combinations on one test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, base_config, make_intent_rows, write_jsonl, write_yaml


@pytest.fixture(scope="module")
def classification_setup(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import tuneforge
    from tuneforge.config import parse_config

    tmp = tmp_path_factory.mktemp("compare")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(30))
    cfg = base_config(tiny_bert, data, tmp / "runs", name="cls",
                      training={"epochs": 4, "early_stopping": {"patience": None}},
                      compare={"bootstrap_samples": 200, "permutations": 200, "latency_examples": 5})
    tuneforge.train(parse_config(cfg), quiet=True)
    return write_yaml(tmp / "cls.yaml", cfg), tmp / "runs" / "cls"


def test_compare_measures_every_system_with_intervals(classification_setup: tuple[Path, Path], cli) -> None:
    from tuneforge.evaluation.retrieval import VectorIndex

    config, run = classification_setup
    res = cli("compare", config, "--run", run)
    assert res.code == 0, res.err
    out = run.parent / "cls-compare"
    report = json.loads((out / "comparison.json").read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert {"zero_shot", "neighbour_vote", "knn_rag", "linear_probe", "run:cls", "run+rag:cls"} <= set(rows)
    metric = report["metric"]
    for r in rows.values():
        assert r["ci_low"] <= r[metric] <= r["ci_high"], r
        assert 0 < r["latency_p50_ms"] <= r["latency_p95_ms"]
        assert r["peak_memory_mb"] > 0
    assert sum(bool(r.get("best_baseline")) for r in rows.values()) == 1
    others = [r for r in rows.values() if not r.get("best_baseline")]
    assert all(0 < r["p_value"] <= 1 for r in others)
    trained = json.loads((run / "metrics.json").read_text())
    assert rows["run:cls"]["trainable_params"] == trained["train"]["trainable_params"]
    # The run's own test score is reproduced by compare on the same split.
    assert rows["run:cls"][metric] == pytest.approx(trained["test"]["macro_f1"], abs=1e-6)
    assert rows["run:cls"]["artifact_bytes"] > 0 and rows["zero_shot"]["trainable_params"] == 0
    assert report["recommendation"] and "recommendation:" in res.out
    index = VectorIndex.load(out / "index")  # the retrieval index is persisted with the comparison
    assert index.size == len((run / "data" / "train.jsonl").read_text().splitlines())
    html = (out / "report.html").read_text()
    assert "Recommendation" in html and html.count("data:image/png;base64,") == 2


def test_recommendation_follows_the_numbers() -> None:
    from tuneforge.evaluation.compare_report import recommend

    def row(key: str, kind: str, score: float, p: float | None = None, **extra: float) -> dict:
        r = {"key": key, "system": key, "kind": kind, "macro_f1": score, "train_seconds": 10.0,
             "latency_p50_ms": 5.0, **extra}
        if p is None:
            r["best_baseline"] = True
        else:
            r["p_value"] = p
        return r

    base = row("knn", "baseline", 0.70)
    assert recommend([base, row("run:a", "fine_tuned", 0.80, 0.001)], "macro_f1", True, 500).startswith("Fine-tune")
    assert recommend([base, row("run:a", "fine_tuned", 0.71, 0.40)], "macro_f1", True, 500).startswith("Too close")
    assert recommend([base, row("run:a", "fine_tuned", 0.60, 0.001)], "macro_f1", True, 500).startswith("Do not")
    # Retrieval that adds nothing significant: the simpler plain run is recommended.
    advice = recommend([base, row("run:a", "fine_tuned", 0.80, 0.001),
                        row("run+rag:a", "combined", 0.81, 0.001, p_vs_run=0.5, delta_vs_run=0.01)],
                       "macro_f1", True, 500)
    assert advice.startswith("Fine-tune: run:a ") and "no significant further gain" in advice
    # ... but when only the combination beats the baseline, the combination is what is recommended.
    advice = recommend([base, row("run:a", "fine_tuned", 0.72, 0.40),
                        row("run+rag:a", "combined", 0.80, 0.001, p_vs_run=0.06, delta_vs_run=0.08)],
                       "macro_f1", True, 500)
    assert advice.startswith("Fine-tune: run+rag:a ")
    # The winner among several fine-tuned rows has its p-value adjusted for the choice (Bonferroni).
    many = [base, *[row(f"run:{i}", "fine_tuned", 0.72, 0.02) for i in range(4)]]
    assert recommend(many, "macro_f1", True, 500).startswith("Too close")
    # For a loss, lower wins.
    loss_base = {**row("zero_shot", "baseline", 0.0), "answer_loss": 3.0}
    tuned = {**row("run:a", "fine_tuned", 0.0, 0.001), "answer_loss": 1.0}
    assert recommend([loss_base, tuned], "answer_loss", False, 100).startswith("Fine-tune")


def test_compare_rejects_a_run_from_another_split(classification_setup: tuple[Path, Path], cli,
                                                  tmp_path: Path) -> None:
    import yaml

    config, run = classification_setup
    raw = yaml.safe_load(config.read_text())
    raw["training"]["seed"] = 7  # another seed, another split
    other = write_yaml(tmp_path / "other.yaml", raw)
    assert_user_error(cli("compare", other, "--run", run), "different test split", fix="config.yaml")


def test_compare_rejects_a_missing_run_folder(classification_setup: tuple[Path, Path], cli, tmp_path: Path) -> None:
    config, _ = classification_setup
    assert_user_error(cli("compare", config, "--run", tmp_path / "nope"), "is not a run folder")


def test_ner_compare_scores_sentences_with_entity_f1(tiny_bert: Path, tmp_path: Path, cli) -> None:
    import tuneforge
    from conftest import make_ner_rows
    from tuneforge.config import parse_config

    data = write_jsonl(tmp_path / "ner.jsonl", make_ner_rows(80))
    raw = base_config(tiny_bert, data, tmp_path / "runs", name="ner", task={"name": "token_classification"},
                      training={"epochs": 3, "early_stopping": {"patience": None}},
                      compare={"bootstrap_samples": 200, "permutations": 200, "latency_examples": 5})
    tuneforge.train(parse_config(raw), quiet=True)
    res = cli("compare", write_yaml(tmp_path / "ner.yaml", raw), "--run", tmp_path / "runs" / "ner")
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "runs" / "ner-compare" / "comparison.json").read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert report["metric"] == "f1" and set(rows) == {"neighbour_vote", "knn_rag", "linear_probe", "run:ner"}
    trained = json.loads((tmp_path / "runs" / "ner" / "metrics.json").read_text())
    assert rows["run:ner"]["f1"] == pytest.approx(trained["test"]["f1"], abs=1e-9)  # same entity F1 as the run
    assert all(r["ci_low"] <= r["f1"] <= r["ci_high"] for r in rows.values())


def test_compare_rejects_unsupported_tasks(tiny_causal: Path, tmp_path: Path, cli) -> None:
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(20)]
    cfg = write_yaml(tmp_path / "pref.yaml", base_config(tiny_causal, write_jsonl(tmp_path / "p.jsonl", rows),
                                                         tmp_path / "runs", task={"name": "preference"}))
    assert_user_error(cli("compare", cfg), "does not support task 'preference'")


def test_generation_compare_scores_prompting_rag_and_runs(tiny_causal: Path, tmp_path: Path) -> None:
    import tuneforge
    from tuneforge.config import parse_config
    from tuneforge.evaluation.compare import compare

    answers = {"refund": "Your refund is on its way.", "track": "Your parcel arrives tomorrow.",
               "cancel": "Your order is cancelled."}
    rows = [{"prompt": f"{k} order {i}", "completion": v} for i in range(40) for k, v in answers.items()]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    docs = tmp_path / "docs"
    docs.mkdir()
    for k, v in answers.items():
        (docs / f"{k}.md").write_text(f"# {k}\n\nWhen a customer asks to {k}, say: {v}\n")
    cfg = base_config(tiny_causal, data, tmp_path / "runs", name="gen", task={"name": "sft", "max_new_tokens": 4},
                      training={"epochs": 3, "learning_rate": 5e-3, "batch_size": 8,
                                "early_stopping": {"patience": None}},
                      compare={"documents": str(docs), "rag_k": 2, "few_shot_k": 2, "bootstrap_samples": 200,
                               "permutations": 200, "latency_examples": 5})
    cfg["data"]["max_length"] = 96
    tuneforge.train(parse_config(cfg), quiet=True)
    result = compare(parse_config(cfg), runs=[str(tmp_path / "runs" / "gen")])
    by_key = {r["key"]: r for r in result.rows}
    assert {"zero_shot", "few_shot", "rag", "run:gen", "run+rag:gen"} == set(by_key)
    assert result.metric == "answer_loss"
    assert all(np.isfinite(r["answer_loss"]) and r["ci_low"] <= r["answer_loss"] <= r["ci_high"]
               for r in result.rows)
    # Fine-tuning on these answers must beat prompting the random base model, significantly.
    assert by_key["run:gen"]["answer_loss"] < by_key["zero_shot"]["answer_loss"]
    assert by_key["run:gen"]["p_value"] < 0.05
    assert "p_vs_run" in by_key["run+rag:gen"]
    assert (result.out_dir / "index" / "index.faiss").is_file()
    assert result.recommendation.startswith("Fine-tune")
