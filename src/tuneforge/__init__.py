"""tuneforge: fine-tune, evaluate, version and serve models privately, on your own hardware."""

from tuneforge._env import apply_privacy_defaults

apply_privacy_defaults()

from tuneforge.errors import ConfigError, DataError, TuneforgeError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "TuneforgeError",
    "__version__",
    "compare",
    "load_config",
    "load_run",
    "plan",
    "predict",
    "predict_file",
    "prepare_data",
    "sweep",
    "train",
]


def __getattr__(name: str):  # lazy: importing tuneforge must stay cheap (the CLI starts fast)
    if name in {"train", "load_run", "predict", "predict_file", "prepare_data"}:
        from tuneforge import api

        return getattr(api, name)
    if name == "plan":
        from tuneforge.estimate.plan import plan

        return plan
    if name == "sweep":
        from tuneforge.hpo.sweep import sweep

        return sweep
    if name == "compare":
        from tuneforge.evaluation.compare import compare

        return compare
    if name == "load_config":
        from tuneforge.config import load_config

        return load_config
    raise AttributeError(name)
