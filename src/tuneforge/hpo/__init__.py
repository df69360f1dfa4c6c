"""Hyperparameter search (`tuneforge sweep`): an Optuna study over config keys, each trial a normal recorded run.

    from tuneforge.hpo.sweep import sweep
    result = sweep("configs/demo.yaml", trials=20, workers=2)

(Nothing is re-exported here: a package attribute `sweep` would be shadowed by the submodule of the same name.)
"""
