"""`tuneforge sweep` on the tiny BERT: workers in two processes share one study, weak trials are pruned, bad search
keys stop before anything runs, and the sweep leaves a loadable best config and a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_user_error, base_config, make_intent_rows, write_jsonl, write_yaml

GOOD_LR, OTHER_LR, FLAT_LR = 5e-3, 1e-2, 1e-7  # FLAT_LR leaves the random model as it is: accuracy stays at chance


def sweep_config(tmp: Path, model: Path, name: str, params: dict[str, Any], **sweep: Any) -> dict[str, Any]:
    """120 intents (96 train / 12 validation / 12 test), 4 epochs, one evaluation per epoch, 1 torch thread
    (2 threads on a shared 2-core machine spin 10x slower)."""
    data = write_jsonl(tmp / "intents.jsonl", make_intent_rows(40))
    return base_config(model, data, tmp / "runs", name=name,
                       training={"epochs": 4, "learning_rate": GOOD_LR, "threads": 1,
                                 "early_stopping": {"patience": None}},
                       sweep={"params": params, **sweep})


def study_trials(db: Path, name: str) -> list[Any]:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)


def test_two_worker_processes_share_one_study(tiny_bert: Path, tmp_path: Path, cli) -> None:
    """The required test: N trials requested, two worker processes -> exactly N trials in the storage, numbers
    0..N-1, each with its own finished run folder, both workers took part, nothing lost or duplicated."""
    from optuna.trial import TrialState

    n = 6
    cfg = sweep_config(tmp_path, tiny_bert, "two", {"training.learning_rate": {"low": 1e-3, "high": 1e-2,
                                                                               "log": True}},
                       startup_trials=10)  # no pruning here: this test is about sharing the study
    cfg["training"]["epochs"] = 1
    res = cli("sweep", write_yaml(tmp_path / "two.yaml", cfg), "--trials", n, "--workers", 2)
    assert res.code == 0, res.out + res.err
    sweep_dir = tmp_path / "runs" / "two-sweep"
    trials = study_trials(sweep_dir / "study.db", "two")
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs) for t in trials]
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes claimed trials from the one queue
    for t in trials:
        run_dir = sweep_dir / f"trial-{t.number:03d}"
        assert Path(t.user_attrs["run_dir"]) == run_dir
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
        saved = (run_dir / "config.yaml").read_text()
        assert f"learning_rate: {t.params['training.learning_rate']}" in saved  # the trial ran its own value
        assert "threads: 1" in saved
    assert len({t.params["training.learning_rate"] for t in trials}) == n  # distinct draws (per-worker seeds)
    assert sorted(p.name for p in sweep_dir.glob("trial-*")) == [f"trial-{i:03d}" for i in range(n)]
    assert (sweep_dir / "logs" / "worker-0.log").is_file() and (sweep_dir / "logs" / "worker-1.log").is_file()
    assert "trial   0 complete" in res.out and "best: trial" in res.out


@pytest.fixture(scope="module")
def pruned_sweep(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Three queued trials, one worker: two good learning rates run first (the pruner's startup trials), then a
    planted flat one, whose validation accuracy stays at chance while theirs rises: deterministic on CPU."""
    import optuna

    from tuneforge.config import parse_config
    from tuneforge.hpo.sweep import sweep

    tmp = tmp_path_factory.mktemp("pruning")
    cfg = parse_config(sweep_config(tmp, tiny_bert, "prune", {
        "training.learning_rate": {"low": 1e-7, "high": 5e-2, "log": True},
        "training.weight_decay": {"low": 0.0, "high": 0.1}}, trials=3, startup_trials=2))
    db = tmp / "runs" / "prune-sweep" / "study.db"
    db.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="prune", storage=f"sqlite:///{db}", direction="maximize")
    for lr in (GOOD_LR, OTHER_LR, FLAT_LR):  # trials joined by `tuneforge sweep` are run in this order
        study.enqueue_trial({"training.learning_rate": lr})
    return tmp, sweep(cfg)


def test_flat_trial_is_pruned_and_good_ones_complete(pruned_sweep: tuple[Path, Any]) -> None:
    from optuna.trial import TrialState

    _, result = pruned_sweep
    trials = {t.number: t for t in study_trials(result.sweep_dir / "study.db", "prune")}
    assert len(trials) == 3  # the three queued trials were the budget: none added
    assert [trials[i].state for i in range(3)] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    flat = trials[2]
    assert flat.params["training.learning_rate"] == FLAT_LR
    assert len(flat.intermediate_values) < 4  # stopped before its last evaluation
    run = json.loads((result.sweep_dir / "trial-002" / "run.json").read_text())
    assert run["status"] == "pruned" and run["metric"] == result.metric == "macro_f1"
    assert not (result.sweep_dir / "trial-002" / "metrics.json").exists()  # never looks like a finished run
    assert not (result.sweep_dir / "trial-002" / "checkpoints").exists()
    for i in (0, 1):
        assert (result.sweep_dir / f"trial-{i:03d}" / "metrics.json").is_file()
        assert len(trials[i].intermediate_values) == 4
    assert result.counts["complete"] == 2 and result.counts["pruned"] == 1


def test_best_config_and_report(pruned_sweep: tuple[Path, Any]) -> None:
    from tuneforge.config import load_config

    tmp, result = pruned_sweep
    trials = {t.number: t for t in study_trials(result.sweep_dir / "study.db", "prune")}
    best = max((t for t in trials.values() if t.value is not None and t.state.name == "COMPLETE"),
               key=lambda t: t.value)
    assert result.best_params == best.params and result.best_value == best.value
    cfg = load_config(result.best_config)  # `tuneforge train best.yaml` works as it is
    assert cfg.training.learning_rate == best.params["training.learning_rate"]
    assert cfg.training.weight_decay == best.params["training.weight_decay"]
    assert cfg.name == "prune-best" and Path(cfg.output_dir) == tmp / "runs"
    ref_cfg = load_config(result.sweep_dir / "reference" / "config.yaml")
    assert ref_cfg.training.learning_rate == GOOD_LR  # the default config: no sweep values
    assert (result.sweep_dir / "reference" / "metrics.json").is_file()
    report = result.report.read_text()
    for needle in ("## Trials", "## Parameter importances", "## Best run vs the default config",
                   "`training.learning_rate`", "`training.weight_decay`", "default config (reference run)",
                   "pruned at evaluation", "optimization_history.png", "trial-000"):
        assert needle in report, needle
    assert "| 2 | pruned |" in report and "| 0 | complete |" in report
    assert (result.sweep_dir / "optimization_history.png").stat().st_size > 1000
    assert (result.sweep_dir / "report.html").is_file()


def test_unknown_search_key_stops_before_any_trial(tiny_bert: Path, tmp_path: Path, cli) -> None:
    cfg = sweep_config(tmp_path, tiny_bert, "bad", {"training.learnin_rate": {"low": 1e-4, "high": 1e-2}})
    res = cli("sweep", write_yaml(tmp_path / "bad.yaml", cfg))
    assert_user_error(res, "sweep.params.training.learnin_rate", fix="did you mean 'training.learning_rate'?")
    assert not (tmp_path / "runs" / "bad-sweep").exists()  # nothing was created, no trial ran

    cfg = sweep_config(tmp_path, tiny_bert, "bad", {"method.r": {"low": 2, "high": 8}})  # full has no rank
    res = cli("sweep", write_yaml(tmp_path / "bad.yaml", cfg))
    assert_user_error(res, "sweep.params.method.r")

    cfg = sweep_config(tmp_path, tiny_bert, "bad", {"training.warmup_ratio": {"low": 0.0, "high": 1.5}})
    res = cli("sweep", write_yaml(tmp_path / "bad.yaml", cfg))
    assert_user_error(res, "sweep.params.training.warmup_ratio", "1.5")

    cfg = sweep_config(tmp_path, tiny_bert, "bad", {})
    res = cli("sweep", write_yaml(tmp_path / "bad.yaml", cfg))
    assert_user_error(res, "sweep.params", "nothing to search", fix="training.learning_rate")
    assert not (tmp_path / "runs" / "bad-sweep").exists()


def test_search_space_types() -> None:
    """Integer-only settings become integer ranges; choices stay categorical; log ranges stay log."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from tuneforge.config import SearchRange
    from tuneforge.hpo.search_space import build_space

    raw = {"data": {"train": "x.jsonl"}, "task": "classification", "method": "lora"}
    space = build_space(raw, {"training.batch_size": SearchRange(low=8, high=32, step=8),
                              "method.r": SearchRange(choices=[4, 8, 16]),
                              "training.epochs": SearchRange(low=1, high=3),
                              "training.learning_rate": SearchRange(low=1e-5, high=1e-3, log=True)})
    assert space["training.batch_size"] == IntDistribution(8, 32, step=8)
    assert space["method.r"] == CategoricalDistribution([4, 8, 16])
    assert space["training.epochs"] == FloatDistribution(1, 3)  # epochs accept fractions
    assert space["training.learning_rate"] == FloatDistribution(1e-5, 1e-3, log=True)


def test_failed_trials_are_recorded_and_replaced(tiny_bert: Path, tmp_path: Path, cli) -> None:
    """A draw the model cannot take (more positions than it has) fails that trial with its message; the sweep goes
    on and replaces it, so the requested number of trials still finish. When every trial fails, exit 2."""
    from optuna.trial import TrialState

    cfg = sweep_config(tmp_path, tiny_bert, "fails", {"data.max_length": {"choices": [32, 1024]}}, trials=3,
                       pruner="none", sampler="random")
    cfg["training"].update(epochs=1, seed=8)  # seed 8: the random sampler draws 1024, 32, 32, 32, ...
    res = cli("sweep", write_yaml(tmp_path / "fails.yaml", cfg))
    assert res.code == 0, res.out + res.err
    trials = study_trials(tmp_path / "runs" / "fails-sweep" / "study.db", "fails")
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(done) == 3 and all(t.params["data.max_length"] == 32 for t in done)
    assert failed and all(t.params["data.max_length"] == 1024 for t in failed)
    assert len(trials) == 3 + len(failed)  # each failure was replaced, nothing more
    assert all("128 positions" in t.user_attrs["error"] for t in failed)
    assert "failed" in res.out and "data.max_length" in (tmp_path / "runs" / "fails-sweep" / "report.md").read_text()

    cfg = sweep_config(tmp_path, tiny_bert, "allfail", {"data.max_length": {"choices": [1024, 2048]}}, trials=5)
    res = cli("sweep", write_yaml(tmp_path / "allfail.yaml", cfg))
    assert_user_error(res, "no trial completed", "128 positions")
    trials = study_trials(tmp_path / "runs" / "allfail-sweep" / "study.db", "allfail")
    # the first 3 failed: a broken setup, so no replacements and the other 2 queued trials were not started
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 + [TrialState.WAITING] * 2


def test_storage_url_errors_hide_the_password(tiny_bert: Path, tmp_path: Path, cli) -> None:
    cfg = sweep_config(tmp_path, tiny_bert, "pg", {"training.learning_rate": {"low": 1e-4, "high": 1e-2}})
    res = cli("sweep", write_yaml(tmp_path / "pg.yaml", cfg), "--storage", "postgresql://me:s3cret@127.0.0.1:9/db")
    assert_user_error(res, "sweep.storage", "postgresql://me:***@127.0.0.1:9/db")
    assert "s3cret" not in res.out + res.err
