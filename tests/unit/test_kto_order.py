"""KTO reads its examples in a fixed order (sequential sampling): that order comes from the run's seed."""

from __future__ import annotations

from pathlib import Path

from conftest import base_config, write_jsonl


def _kto_order(model: Path, tmp_path: Path, seed: int) -> list[tuple[list[int], bool]]:
    """(completion tokens, desirable) of the examples in the order the KTO trainer reads them."""
    from tuneforge.config import parse_config
    from tuneforge.data.prepare import prepare_data
    from tuneforge.models.loading import load_tokenizer
    from tuneforge.tasks import TASKS
    from tuneforge.training.trainer import build_trainer

    rows = [{"prompt": f"refund order {i}", "chosen": f"Refund {i} is on its way.", "rejected": f"no idea {i}"}
            for i in range(24)]
    raw = base_config(model, write_jsonl(tmp_path / "pairs.jsonl", rows), tmp_path / "runs",
                      task={"name": "preference", "algorithm": "kto"}, method={"name": "full"},
                      training={"epochs": 1, "batch_size": 4, "seed": seed, "threads": 1})
    raw["data"]["split"] = {"seed": 0}  # the same training examples for every training seed
    cfg = parse_config(raw)
    tokenizer = load_tokenizer(str(model))
    task = TASKS.get("preference")(cfg.task)
    task.prepare_tokenizer(tokenizer)
    data = prepare_data(cfg, task, tokenizer)
    model_obj = task.build_model(str(model), [], pad_token_id=tokenizer.pad_token_id)
    encode = task.encode
    trainer, _, stop = build_trainer(cfg, model_obj, tokenizer, encode(data.splits["train"], tokenizer, [], 64),
                                     encode(data.splits["validation"], tokenizer, [], 64), None, None, "loss",
                                     tmp_path / "ckpt", None, quiet=True, loss_only=True, spec=task.trainer_spec(cfg))
    stop.restore_handlers()
    assert list(trainer._get_train_sampler()) == list(range(len(trainer.train_dataset)))  # read in dataset order
    ds = trainer.train_dataset
    return list(zip(ds["completion_ids"], ds["label"], strict=True))


def test_kto_order_follows_the_training_seed(tiny_causal: Path, tmp_path: Path) -> None:
    first = _kto_order(tiny_causal, tmp_path / "a", seed=1)
    again = _kto_order(tiny_causal, tmp_path / "b", seed=1)
    other = _kto_order(tiny_causal, tmp_path / "c", seed=2)
    assert first == again
    assert other != first and sorted(other) == sorted(first)  # the same examples, another order
    # shuffled, not in the pairs they were written in (chosen, rejected, chosen, ...)
    assert [label for _, label in first] != [i % 2 == 0 for i in range(len(first))]

