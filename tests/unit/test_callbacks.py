"""Training callbacks driven with synthetic logs: overfitting detection, NaN guard, resumable state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuneforge.errors import TrainingDiverged
from tuneforge.training.callbacks import NanGuard, OverfitDetector, restore_attributes


def _drive(detector: OverfitDetector, train: list[float], val: list[float]) -> SimpleNamespace:
    control = SimpleNamespace(should_training_stop=False)
    for step, (t, v) in enumerate(zip(train, val, strict=True), start=1):
        state = SimpleNamespace(global_step=step * 10)
        detector.on_log(None, state, control, logs={"loss": t})
        detector.on_evaluate(None, state, control, metrics={"eval_loss": v})
    return control


def test_overfitting_detected_when_val_rises_and_train_falls() -> None:
    detector = OverfitDetector(patience=3, stop=True)
    control = _drive(detector, train=[1.0, 0.8, 0.6, 0.4, 0.3], val=[0.9, 0.7, 0.75, 0.8, 0.85])
    assert control.should_training_stop
    assert [e["step"] for e in detector.events] == [50]


def test_no_overfitting_when_both_fall_or_val_is_noisy() -> None:
    detector = OverfitDetector(patience=3, stop=True)
    control = _drive(detector, train=[1.0, 0.8, 0.6, 0.4, 0.3], val=[0.9, 0.8, 0.85, 0.7, 0.75])
    assert not control.should_training_stop and detector.events == []


def test_warn_only_mode_does_not_stop() -> None:
    detector = OverfitDetector(patience=2, stop=False)
    control = _drive(detector, train=[1.0, 0.8, 0.6], val=[0.5, 0.6, 0.7])
    assert not control.should_training_stop and len(detector.events) == 1


def test_state_survives_a_resume() -> None:
    before = OverfitDetector(patience=3, stop=True)
    _drive(before, train=[1.0, 0.8, 0.6], val=[0.9, 0.95, 1.0])
    saved = SimpleNamespace(stateful_callbacks={"OverfitDetector": before.state()})
    after = OverfitDetector(patience=3, stop=True)
    restore_attributes(after, saved)
    control = SimpleNamespace(should_training_stop=False)
    state = SimpleNamespace(global_step=40)
    after.on_log(None, state, control, logs={"loss": 0.5})
    after.on_evaluate(None, state, control, metrics={"eval_loss": 1.1})
    assert control.should_training_stop  # the fourth evaluation completes the pattern begun before the resume


def test_nan_loss_stops_with_a_clear_error() -> None:
    with pytest.raises(TrainingDiverged, match="nan at step 7"):
        NanGuard().on_log(None, SimpleNamespace(global_step=7), None, logs={"loss": float("nan")})
