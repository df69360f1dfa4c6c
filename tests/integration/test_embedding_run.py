"""Embedding runs on the tiny BERT: pairs, triplets and labelled texts train and beat the base model on held-out
queries; bad records exit 2 with file:line; the saved model is a sentence-transformers folder giving the vectors
tuneforge's LoadedRun.embed gives, and the scores the run recorded.

The pair data asks about a city and is answered by a text naming only its country, so a random-weight model cannot
match them by shared words: only training teaches which city belongs to which country."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import assert_user_error, base_config, make_config, make_intent_rows, write_jsonl, write_yaml

CITIES = [("Paris", "France"), ("Lima", "Peru"), ("Oslo", "Norway"), ("Kyoto", "Japan"), ("Lagos", "Nigeria"),
          ("Cairo", "Egypt"), ("Quito", "Ecuador"), ("Hanoi", "Vietnam"), ("Dublin", "Ireland"), ("Perth", "Australia"),
          ("Porto", "Portugal"), ("Seville", "Spain"), ("Krakow", "Poland"), ("Nairobi", "Kenya"), ("Havana", "Cuba"),
          ("Lhasa", "Tibet"), ("Zurich", "Switzerland"), ("Austin", "Texas"), ("Mumbai", "India"), ("Seoul", "Korea")]
ASKS = ["flights to {c}", "hotels in {c} tonight", "weather in {c} this week", "best food in {c}", "museums near {c}"]


def city_rows(triplets: bool = False, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i, (city, country) in enumerate(CITIES):
        for ask in ASKS:
            row = {"query": ask.format(c=city), "doc": f"travel guide for {country}"}
            if triplets:  # another country's guide
                row["bad"] = f"travel guide for {CITIES[(i + 1 + rng.randrange(len(CITIES) - 1)) % len(CITIES)][1]}"
            rows.append(row)
    rng.shuffle(rows)
    return rows


def embedding_config(model: Path, train: Path, out: Path, name: str, task: dict[str, Any],
                     method: dict[str, Any] | None = None, epochs: int = 10,
                     learning_rate: float = 2e-3) -> dict[str, Any]:
    return base_config(model, train, out, name=name, task={"name": "embedding", **task},
                       method=method or {"name": "full"},
                       training={"epochs": epochs, "learning_rate": learning_rate, "threads": 1,
                                 "early_stopping": {"patience": None}},
                       evaluation={"baselines": ["base_model"]})


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    import tuneforge
    from tuneforge.config import parse_config

    result = tuneforge.train(parse_config(cfg), quiet=True)
    return json.loads((result.run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def pair_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pairs")
    data = write_jsonl(tmp / "pairs.jsonl", city_rows())
    train(embedding_config(tiny_bert, data, tmp / "runs", "pairs",
                           {"anchor_column": "query", "positive_column": "doc"}))
    return tmp / "runs" / "pairs"


def test_pairs_train_and_beat_the_base_model(pair_run: Path) -> None:
    metrics = json.loads((pair_run / "metrics.json").read_text())
    tuned, base = metrics["test"], metrics["baselines"]["base_model"]
    assert tuned["ndcg_at_10"] >= base["ndcg_at_10"] + 0.2, (tuned, base)
    assert tuned["recall_at_1"] > base["recall_at_1"]
    row = metrics["comparison"][-1]
    assert row["key"] == "fine_tuned" and row["vs"] == "base_model" and "p_value" in row
    assert row["ci_low"] <= row["score"] <= row["ci_high"] and row["ci_low"] < row["ci_high"]
    assert -1 <= tuned["reference_spearman"] <= 1 and -1 <= metrics["train"]["reference_spearman_before"] <= 1
    assert metrics["train"]["reference_spearman_before"] == pytest.approx(base["reference_spearman"], abs=1e-5)


def _loaded_vectors(run_dir: Path, texts: list[str], **st_kwargs: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    from sentence_transformers import SentenceTransformer

    from tuneforge.registry.loaded_run import load_run

    st_model = SentenceTransformer(str(run_dir / "model"), device="cpu", **st_kwargs)
    plain = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return plain, load_run(run_dir).embed(texts), st_model


def _rescored(run_dir: Path, st_model: Any) -> float:
    """The primary metric of the loaded model on the run's own test split."""
    from tuneforge.registry.loaded_run import load_run

    run = load_run(run_dir)
    test = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    return run.task.evaluate(st_model, None, test, [], run.max_length, 16).metrics["ndcg_at_10"]


def test_saved_model_is_a_sentence_transformers_folder(pair_run: Path) -> None:
    texts = ["flights to Oslo", "travel guide for Norway", "something else entirely"]
    plain, ours, st_model = _loaded_vectors(pair_run, texts)
    assert plain.shape == (3, 32)
    np.testing.assert_allclose(plain, ours, atol=1e-5)
    recorded = json.loads((pair_run / "metrics.json").read_text())["test"]["ndcg_at_10"]
    assert _rescored(pair_run, st_model) == pytest.approx(recorded, abs=1e-4)  # the trained model, not the base


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_partial_methods_save_a_loadable_tuned_model(method: str, tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", city_rows())
    train(embedding_config(tiny_bert, data, tmp_path / "runs", method, {"anchor_column": "query",
                                                                       "positive_column": "doc"},
                           # a 16-wide bottleneck, not the default 2 of a 32-wide model, so 3 epochs move it
                           method={"name": method, **({"reduction_factor": 2} if method == "adapter" else {})},
                           epochs=3, learning_rate=1e-2))
    run_dir = tmp_path / "runs" / method
    files = {p.name for p in (run_dir / "model").iterdir()}
    assert "adapter_config.json" not in files  # LoRA merged into the weights, not a PEFT folder
    texts = ["flights to Oslo", "travel guide for Norway"]
    extra = {"trust_remote_code": True} if method == "adapter" else {}  # the adapter module is tuneforge's class
    plain, ours, st_model = _loaded_vectors(run_dir, texts, **extra)
    np.testing.assert_allclose(plain, ours, atol=1e-5)
    recorded = json.loads((run_dir / "metrics.json").read_text())["test"]["ndcg_at_10"]
    assert _rescored(run_dir, st_model) == pytest.approx(recorded, abs=1e-4)
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(str(tiny_bert), device="cpu").encode(texts, normalize_embeddings=True)
    assert not np.allclose(base, plain, atol=1e-4)  # what was saved is the tuned model


def test_triplets_train_and_beat_the_base_model(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "triplets.jsonl", city_rows(triplets=True))
    metrics = train(embedding_config(tiny_bert, data, tmp_path / "runs", "triplets",
                                     {"anchor_column": "query", "positive_column": "doc", "negative_column": "bad"}))
    tuned, base = metrics["test"], metrics["baselines"]["base_model"]
    assert tuned["ndcg_at_10"] >= base["ndcg_at_10"] + 0.2, (tuned, base)
    test = [json.loads(line) for line in (tmp_path / "runs" / "triplets" / "data" / "test.jsonl").open()]
    assert all(e["negative"].startswith("travel guide for") for e in test)  # the negative column was read


@pytest.fixture(scope="module")
def labelled_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config file, run folder) of a labelled-data run with mined hard negatives."""
    tmp = tmp_path_factory.mktemp("labels")
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(30))
    cfg = embedding_config(tiny_bert, data, tmp / "runs", "labels", {"data": "labels", "hard_negatives": True},
                           epochs=4)
    cfg["data"]["split"] = {"train": 0.6, "validation": 0.1, "test": 0.3}  # 27 test queries, not 9
    cfg["compare"] = {"bootstrap_samples": 200, "permutations": 200, "latency_examples": 5}
    train(cfg)
    return write_yaml(tmp / "labels.yaml", cfg), tmp / "runs" / "labels"


def test_labelled_texts_train_with_mined_hard_negatives(labelled_run: tuple[Path, Path]) -> None:
    metrics = json.loads((labelled_run[1] / "metrics.json").read_text())
    tuned, base = metrics["test"], metrics["baselines"]["base_model"]
    assert tuned["ndcg_at_10"] > base["ndcg_at_10"] + 0.05, (tuned, base)
    mined = metrics["train"]["hard_negatives"]
    assert mined["mined"] == mined["of"] > 0  # labelled data: every text gets its nearest other-label text


def test_compare_puts_the_tuned_encoder_beside_the_base_in_retrieval_and_knn(labelled_run: tuple[Path, Path],
                                                                             cli) -> None:
    config, run = labelled_run
    res = cli("compare", config, "--run", run)
    assert res.code == 0, res.err
    report = json.loads((run.parent / "labels-compare" / "comparison.json").read_text())
    assert report["metric"] == "ndcg_at_10"
    rows = {r["key"]: r for r in report["rows"]}
    assert set(rows) == {"base_encoder", "run:labels"}
    base, tuned = rows["base_encoder"], rows["run:labels"]
    recorded = json.loads((run / "metrics.json").read_text())
    # Each row is its encoder scored as the run scored itself on the same test split.
    assert tuned["ndcg_at_10"] == pytest.approx(recorded["test"]["ndcg_at_10"], abs=1e-5)
    assert base["ndcg_at_10"] == pytest.approx(recorded["baselines"]["base_model"]["ndcg_at_10"], abs=1e-5)
    assert tuned["ndcg_at_10"] != base["ndcg_at_10"] and base.get("best_baseline") and 0 < tuned["p_value"] <= 1
    for r in (base, tuned):
        assert r["ci_low"] <= r["ndcg_at_10"] <= r["ci_high"]
        assert set(r["secondary"]) == {"recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "knn_accuracy"}
        for name, s in r["secondary"].items():
            assert s["ci_low"] <= s["value"] <= s["ci_high"] and 0 <= s["value"] <= 1, name
    assert tuned["secondary"]["recall_at_5"]["value"] == pytest.approx(recorded["test"]["recall_at_5"], abs=1e-5)
    assert tuned["secondary"] != base["secondary"]
    assert tuned["trainable_params"] == recorded["train"]["trainable_params"] and base["trainable_params"] == 0
    md = (run.parent / "labels-compare" / "report.md").read_text()
    assert "knn_accuracy [95% CI]" in md and "fine-tuned full (labels)" in md


def test_compare_of_a_pairs_run_has_retrieval_rows_and_no_knn(pair_run: Path, cli) -> None:
    res = cli("compare", pair_run / "config.yaml", "--run", pair_run, "--set", "compare.bootstrap_samples=100",
              "--set", "compare.permutations=100", "--set", "compare.latency_examples=5")
    assert res.code == 0, res.err
    report = json.loads((pair_run.parent / "pairs-compare" / "comparison.json").read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert set(rows["run:pairs"]["secondary"]) == {"recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10"}
    assert rows["run:pairs"]["ndcg_at_10"] >= rows["base_encoder"]["ndcg_at_10"] + 0.2  # as the run measured itself
    assert "Fine-tune" in report["recommendation"]


@pytest.mark.parametrize(("record", "needle", "fix"), [
    ({"query": "flights to Oslo"}, "missing column 'doc'", "task.positive_column"),
    ({"query": "  ", "doc": "travel guide for Norway"}, "empty anchor in column 'query'", "--skip-invalid"),
])
def test_bad_records_exit_2_with_file_and_line(cli, tiny_bert: Path, tmp_path: Path, record: dict[str, str],
                                               needle: str, fix: str) -> None:
    rows = city_rows()[:6]
    rows.insert(3, record)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = make_config(tmp_path, tiny_bert, data, task={"name": "embedding", "anchor_column": "query",
                                                       "positive_column": "doc"})
    res = cli("train", cfg, "--quiet")
    assert_user_error(res, f"{data}:4", needle, fix=fix)


def test_recommendation_example_reads_as_history_item_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneforge

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the example's data path is relative to the repository root
    data = tuneforge.prepare_data(root / "examples" / "recommendation" / "config.yaml")
    assert len(data.splits["train"]) > 250 and len(data.splits["test"]) >= 30
    example = data.splits["test"][0]
    assert example["anchor"].startswith("Recently") and ":" in example["positive"]
