"""A new task is one file that registers itself: a toy task written in a temporary folder (no other file edited)
is named in a config's `plugins`, trains, is loaded back, and is compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import base_config, make_intent_rows, write_jsonl, write_yaml

TOY_TASK = '''
from typing import Any, ClassVar, Literal

from tuneforge.tasks.base import TASKS
from tuneforge.tasks.classification import Classification, ClassificationParams


class ShoutingParams(ClassificationParams):
    name: Literal["shouting_intents"] = "shouting_intents"


@TASKS.register
class ShoutingIntents(Classification):
    """Intent classification that reads every text upper-cased (a stand-in for any new task)."""

    name = "shouting_intents"
    Params = ShoutingParams
    pipeline_tag: ClassVar[str | None] = "text-classification"

    def parse(self, raw: dict[str, Any], columns: Any, known_labels: Any) -> dict[str, Any]:
        example = super().parse(raw, columns, known_labels)
        return {**example, "text": example["text"].upper()}
'''


def test_plugin_task_trains_loads_and_compares(tmp_path: Path, tiny_bert: Path, cli: Any) -> None:
    plugin = tmp_path / "shouting_task.py"
    plugin.write_text(TOY_TASK)
    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(15))
    cfg = base_config(tiny_bert, data, tmp_path / "runs", task={"name": "shouting_intents"},
                      plugins=[str(plugin)])
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 3}
    config_file = write_yaml(tmp_path / "run.yaml", cfg)

    assert cli("config", "validate", str(config_file)).code == 0
    trained = cli("train", str(config_file))
    assert trained.code == 0, trained.err
    run_dir = tmp_path / "runs" / "t"
    rows = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert rows and all(r["text"] == r["text"].upper() for r in rows)  # the plug-in's own parsing ran
    assert "pipeline_tag: text-classification" in (run_dir / "README.md").read_text()

    import tuneforge

    run = tuneforge.load_run(run_dir)
    assert run.task.name == "shouting_intents"
    assert run.predict(["REFUND MY ORDER"])[0]["label"] in run.labels

    compare_cfg = {**cfg, "compare": {"runs": [str(run_dir)], "bootstrap_samples": 200, "permutations": 200,
                                      "latency_examples": 5}}
    compared = cli("compare", str(write_yaml(tmp_path / "compare.yaml", compare_cfg)))
    assert compared.code == 0, compared.err
    assert "run:t" in {r["key"] for r in json.loads(
        (tmp_path / "runs" / "t-compare" / "comparison.json").read_text())["rows"]}


def test_unimportable_plugin_is_a_config_error(tmp_path: Path, tiny_bert: Path, cli: Any) -> None:
    from conftest import assert_user_error

    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(5))
    cfg = base_config(tiny_bert, data, tmp_path / "runs", plugins=[str(tmp_path / "missing_task.py")])
    res = cli("config", "validate", str(write_yaml(tmp_path / "run.yaml", cfg)))
    assert_user_error(res, "plugins", "missing_task.py")
