"""Faults a long run must survive, each costing at most the steps since the last checkpoint: a full disk during a
save, a NaN loss, a corrupted or truncated checkpoint file (see docs/reliability.md for the whole table)."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_user_error, base_config, make_intent_rows, write_jsonl, write_yaml


def _config(tmp_path: Path, model: Path, **training: Any) -> Any:
    import tuneforge

    data = write_jsonl(tmp_path / "intents.jsonl", make_intent_rows(20))
    cfg = base_config(model, data, tmp_path / "runs")
    cfg["training"] = {**cfg["training"], "epochs": 1, "max_steps": 6, "eval_steps": 2, "batch_size": 8,
                       "save_total_limit": 3, "early_stopping": {"patience": None}, **training}
    path = write_yaml(tmp_path / "run.yaml", cfg)
    return path, tuneforge.load_config(path)


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path, tiny_bert: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import tuneforge
    from tuneforge.errors import CheckpointError
    from tuneforge.training.checkpoint import check_checkpoint

    _, cfg = _config(tmp_path, tiny_bert)
    real_save, calls = torch.save, {"n": 0}

    def save_until_full(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        if str(f).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 2:  # the second checkpoint finds the disk full half-way through
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(CheckpointError, match="disk is full") as caught:
        tuneforge.train(cfg, quiet=True)
    folder = cfg.run_dir / "checkpoints"
    assert "checkpoint-2 is intact" in str(caught.value)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2"]  # no half-written checkpoint, no staging
    check_checkpoint(folder / "checkpoint-2")
    assert json.loads((cfg.run_dir / "run.json").read_text())["status"] == "failed"
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run continues from step 2
    result = tuneforge.train(cfg, resume=True, quiet=True)
    assert result.train_info["resumed_from"].endswith("checkpoint-2") and result.train_info["steps"] == 6


def test_nan_loss_stops_naming_step_and_batch_and_keeps_the_good_checkpoint(tmp_path: Path,
                                                                             tiny_bert: Path) -> None:
    import torch
    from transformers import TrainerCallback

    import tuneforge
    from tuneforge.errors import TrainingDiverged
    from tuneforge.training.checkpoint import check_checkpoint

    class PoisonAtStep3(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.global_step == 2:
                with torch.no_grad():
                    next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))

    _, cfg = _config(tmp_path, tiny_bert)
    with pytest.raises(TrainingDiverged, match=r"at step 3 \(micro-batch 3") as caught:
        tuneforge.train(cfg, callbacks=[PoisonAtStep3()], quiet=True)
    assert "batch shape" in str(caught.value) and "checkpoint-2" in str(caught.value)
    folder = cfg.run_dir / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2"]
    check_checkpoint(folder / "checkpoint-2")
    from safetensors.torch import load_file

    weights = load_file(str(next((folder / "checkpoint-2").glob("*.safetensors"))))
    assert all(torch.isfinite(t).all() for t in weights.values())  # the kept checkpoint is clean


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_checkpoint_is_refused_on_resume(tmp_path: Path, tiny_bert: Path, cli: Any, damage: str) -> None:
    from transformers import TrainerCallback

    import tuneforge

    class StopAfter4(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 5:
                raise KeyboardInterrupt  # a crash after checkpoint-4 was written

    path, cfg = _config(tmp_path, tiny_bert)
    with pytest.raises(KeyboardInterrupt):
        tuneforge.train(cfg, callbacks=[StopAfter4()], quiet=True)
    ckpt = cfg.run_dir / "checkpoints" / "checkpoint-4"
    manifest = json.loads((ckpt / "checksums.json").read_text())
    assert {"optimizer.pt", "trainer_state.json"} <= set(manifest)
    weights = next(ckpt.glob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    if damage == "flip":
        blob[-5] ^= 0xFF  # one flipped byte deep inside a tensor: structurally still a valid file
    else:
        blob = blob[: len(blob) // 2]
    weights.write_bytes(bytes(blob))
    res = cli("train", str(path), "--resume")
    assert_user_error(res, weights.name, "corrupted" if damage == "flip" else "truncated", fix="delete")


def test_resume_refuses_data_changed_since_the_crash(tmp_path: Path, tiny_bert: Path, cli: Any) -> None:
    from transformers import TrainerCallback

    import tuneforge

    class CrashAt3(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 3:
                raise KeyboardInterrupt

    path, cfg = _config(tmp_path, tiny_bert)
    with pytest.raises(KeyboardInterrupt):
        tuneforge.train(cfg, callbacks=[CrashAt3()], quiet=True)
    rows = make_intent_rows(20)
    rows[0]["text"] = "an edited example that was not there when the run started"
    write_jsonl(tmp_path / "intents.jsonl", rows)
    assert_user_error(cli("train", str(path), "--resume"), "data changed since this run started",
                      fix="restore the original data")
