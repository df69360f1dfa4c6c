"""data.augment.keep: if_better trains with and without augmentation (same seed and budget) and keeps the run with
the better validation metric, recording both with their CIs."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import base_config, make_intent_rows, write_jsonl


def test_if_better_trains_both_and_keeps_the_better_on_validation(tiny_bert: Path, tmp_path: Path) -> None:
    import tuneforge
    from tuneforge.config import parse_config

    data = write_jsonl(tmp_path / "d.jsonl", make_intent_rows(10))
    cfg = base_config(tiny_bert, data, tmp_path / "runs", name="small",
                      data={"augment": {"n": 2, "edits": ["swap", "delete"], "keep": "if_better"}},
                      training={"epochs": 1, "max_steps": 2, "threads": 1})
    result = tuneforge.train(parse_config(cfg), quiet=True)
    choice = json.loads((tmp_path / "runs" / "small.augment-choice.json").read_text())
    plain, augmented = choice["runs"]["plain"], choice["runs"]["augmented"]
    assert {Path(plain["run"]).name, Path(augmented["run"]).name} == {"small-plain", "small-augmented"}
    better = "augmented" if augmented["validation"] > plain["validation"] else "plain"
    assert choice["kept"] == better and result.run_dir == Path(choice["runs"][better]["run"])
    for run in (plain, augmented):
        assert run["ci_low"] <= run["validation"] <= run["ci_high"] and run["metric"] == "macro_f1"
    reports = {name: json.loads((Path(r["run"]) / "data" / "report.json").read_text())
               for name, r in choice["runs"].items()}
    assert "augmentation" not in reports["plain"] and reports["augmented"]["augmentation"]["rows_added"] > 0
    assert reports["plain"]["fingerprints"]["validation"] == reports["augmented"]["fingerprints"]["validation"]
    assert reports["plain"]["fingerprints"]["test"] == reports["augmented"]["fingerprints"]["test"]
    assert json.loads((Path(plain["run"]) / "augment_choice.json").read_text()) == choice
