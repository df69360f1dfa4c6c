"""The shared seams later stages build on (builder, loaded run) and the review's correctness fixes that live in
the run pipeline: crash status, single-metric tasks, library warnings kept off the console, the run table's CI and
paired test, escaped label names, the base model's revision saved with the model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from conftest import base_config, make_intent_rows, write_jsonl, write_yaml


class _Boom(Exception):
    pass


def _tiny_cfg(tmp_path: Path, model: Path, rows: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    data = write_jsonl(tmp_path / "intents.jsonl", rows or make_intent_rows(20))
    cfg = base_config(model, data, tmp_path / "runs", **extra)
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 3}
    return cfg


def test_crash_marks_run_failed_and_runs_list_shows_it(tmp_path: Path, tiny_bert: Path, cli: Any) -> None:
    from transformers import TrainerCallback

    import tuneforge

    class Explode(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            raise _Boom("disk on fire")

    cfg = tuneforge.load_config(write_yaml(tmp_path / "run.yaml", _tiny_cfg(tmp_path, tiny_bert)))
    with pytest.raises(_Boom):
        tuneforge.train(cfg, callbacks=[Explode()], quiet=True)
    status = json.loads((cfg.run_dir / "run.json").read_text())
    assert status["status"] == "failed" and "disk on fire" in status["error"]
    listing = cli("runs", "list", "--dir", str(tmp_path / "runs"))
    assert listing.code == 0 and "failed" in listing.out


def test_library_warnings_go_to_the_run_log_not_the_console(tmp_path: Path, tiny_bert: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import TrainerCallback

    import tuneforge

    class Warn(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            warnings.warn("a library deprecation nobody asked to see", FutureWarning, stacklevel=1)

    cfg = tuneforge.load_config(write_yaml(tmp_path / "run.yaml", _tiny_cfg(tmp_path, tiny_bert)))
    tuneforge.train(cfg, callbacks=[Warn()], quiet=True)
    shown = capsys.readouterr()
    assert "nobody asked to see" not in shown.out + shown.err
    assert "nobody asked to see" in (cfg.run_dir / "logs" / "train.log").read_text()


def test_loaded_run_predicts_embeds_and_records_its_base(tmp_path: Path, tiny_bert: Path) -> None:
    import numpy as np

    import tuneforge
    from tuneforge.errors import RunError

    rows = make_intent_rows(20)
    for r in rows[:5]:
        r["label"] = "<script>alert(1)</script>"  # a label name that must not reach report.html as markup
    cfg = tuneforge.load_config(write_yaml(tmp_path / "run.yaml", _tiny_cfg(tmp_path, tiny_bert, rows)))
    tuneforge.train(cfg, quiet=True)
    run = tuneforge.load_run(cfg.run_dir)
    assert run.name == cfg.run_dir.name and not run.generative and not run.is_adapter
    predictions = run.predict(["refund my order", "where is my parcel"])
    assert len(predictions) == 2 and all(p["label"] in run.labels for p in predictions)
    vectors = run.embed(["refund my order", "refund my order", "cancel it"])
    assert vectors.shape[0] == 3 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[1]) and not np.allclose(vectors[0], vectors[2])
    with pytest.raises(RunError, match="generative"):
        run.generate([{"role": "user", "content": "hi"}])
    meta = json.loads((cfg.run_dir / "model" / "tuneforge.json").read_text())
    assert "base_revision" in meta and meta["trust_remote_code"] is False
    env = json.loads((cfg.run_dir / "environment.json").read_text())
    assert env["base_model"]["resolved"] == str(tiny_bert.resolve())
    html = (cfg.run_dir / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_run_table_has_confidence_interval_and_paired_test() -> None:
    from tuneforge.evaluation.report import comparison_rows
    from tuneforge.tasks.base import EvalResult

    refs = [0, 1, 2] * 20
    tuned = EvalResult({"macro_f1": 1.0, "accuracy": 1.0}, predictions=list(refs), references=list(refs))
    worse = [r if i % 10 else (r + 1) % 3 for i, r in enumerate(refs)]  # 6 of 60 wrong
    probe = EvalResult({"macro_f1": 0.9, "accuracy": 0.9}, predictions=worse, references=list(refs))
    rows = comparison_rows("full", tuned, {"linear_probe": probe}, "macro_f1", "accuracy", seed=0)
    fine = rows[-1]
    assert fine["ci_low"] <= fine["score"] <= fine["ci_high"] and rows[0]["ci_low"] < rows[0]["score"]
    assert 0 < fine["p_value"] <= 1 and fine["gain"] == pytest.approx(0.1)
    close = EvalResult({"macro_f1": 0.98}, predictions=[r if i else (r + 1) % 3 for i, r in enumerate(refs)],
                       references=list(refs))
    noisy = comparison_rows("full", close, {"linear_probe": probe}, "macro_f1", "accuracy", seed=0)[-1]
    assert "within noise" not in fine["delta"] or fine["p_value"] >= 0.05
    assert (noisy["p_value"] >= 0.05) == ("within noise" in noisy["delta"])


def test_loss_difference_is_shown_in_its_own_units() -> None:
    from tuneforge.evaluation.report import comparison_rows
    from tuneforge.evaluation.stats import higher_is_better
    from tuneforge.tasks.base import EvalResult

    rows = comparison_rows("lora", EvalResult({"answer_loss": 2.5}), {"base_model": EvalResult({"answer_loss": 3.0})},
                           "answer_loss", "answer_loss")
    assert rows[-1]["gain"] == pytest.approx(0.5) and rows[-1]["delta"].startswith("+0.5000")
    assert "pts" not in rows[-1]["delta"]
    assert not higher_is_better("eval_loss") and not higher_is_better("perplexity") and higher_is_better("f1")


def test_secondary_metric_with_a_single_metric_task() -> None:
    from tuneforge.evaluation.run_evaluation import secondary_metric

    assert secondary_metric({"mean_reward": 0.3}, "mean_reward") is None
    assert secondary_metric({"macro_f1": 0.3, "accuracy": 0.4}, "macro_f1") == "accuracy"
    assert secondary_metric({"f1": 0.3, "precision": 0.4}, "f1") == "precision"
