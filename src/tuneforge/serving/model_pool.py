"""Which models are in memory: the workspace's runs, adapter runs sharing one base, an LRU over resident adapters.

PEFT adapter runs trained on the same base (same base path and revision, same task settings and labels, same PEFT
method) share one base model in memory: the first loads the base and its adapter with `PeftModel.from_pretrained`,
the next ones `load_adapter(..., adapter_name=...)`, and each use calls `set_adapter`. Past `max_adapters` resident
adapter runs the least recently used is dropped (`delete_adapter`; the base goes with its last adapter).
tuneforge's own bottleneck `adapter` method hooks its layers into the base model's modules, so two such runs cannot
share one base; each is loaded whole, but still counts against `max_adapters`. Full fine-tunes stay loaded.

Not thread-safe by design: only the engine's single worker thread touches models.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError, TuneforgeError
from tuneforge.registry.loaded_run import LoadedRun, load_run

DEFAULT_MODEL = "default"
log = logging.getLogger("tuneforge.serve")


def discover_runs(workspace: Path, wanted: list[str] | None = None,
                  known: frozenset[str] = frozenset()) -> dict[str, LoadedRun]:
    """Every finished run folder directly under `workspace` (or only `wanted`: names there, or paths), leaving
    out folders named in `known` (a rescan reads only new folders)."""
    if not workspace.is_dir():
        raise RunError(f"the workspace {workspace} does not exist",
                       fix="give the folder that holds your run folders: --workspace DIR")
    if wanted:
        paths = [Path(w) if Path(w).is_dir() else workspace / w for w in wanted]
        runs = [load_run(p) for p in paths]  # a named run that is not finished is the user's error: say so
    else:
        runs = []
        for folder in sorted(workspace.iterdir()):
            if folder.name in known:
                continue
            if (folder / "metrics.json").is_file() and (folder / "model" / "tuneforge.json").is_file():
                try:
                    runs.append(_named(load_run(folder)))
                except TuneforgeError as exc:  # one unreadable run folder must not take the others offline
                    log.warning("not serving %s: %s", folder, exc)
    named: dict[str, LoadedRun] = {}
    for run in runs:
        if run.name == DEFAULT_MODEL or run.name in named:
            raise RunError(f"two models would be called {run.name!r}", fix="serve runs whose folder names differ")
        named[run.name] = run
    return named


def _named(run: LoadedRun) -> LoadedRun:
    """A fine-tuning job's run answers to its `ft:` id (serving/job_config.py), any other run to its folder name."""
    from tuneforge.serving.job_config import served_as, served_name

    name = served_name(run.path)
    return served_as(run, name) if name else run


def share_key(run: LoadedRun) -> str | None:
    """Runs with the same key can share one PEFT model; None: the run loads on its own."""
    if not run.is_adapter or getattr(run.method, "library_name", None) != "peft":
        return None
    return json.dumps([run.base_model_path, run.base_revision, run.meta["task"], run.labels, run.method.name],
                      sort_keys=True)


class ModelPool:
    def __init__(self, runs: dict[str, LoadedRun], max_adapters: int = 8, device: str = "cpu") -> None:
        self.runs, self.max_adapters, self.device = runs, max(1, max_adapters), device
        self._shared: dict[str, Any] = {}  # share key -> PeftModel holding several runs' adapters
        self._resident: OrderedDict[str, str | None] = OrderedDict()  # adapter run -> its share key
        # PEFT adapter names become module-dict keys, so they must not hold dots; folder names may.
        self._adapter_name: dict[str, str] = {}
        for name in sorted(runs):
            self._name_adapter(name)
        self._default: tuple[Any, Any] | None = None
        self.loads = 0  # adapter loads so far (a test and the metrics read it)
        self.aliases: dict[str, str] = {}  # registered model name -> its champion's run (serving/champion.py)

    @property
    def resident_adapters(self) -> list[str]:
        return list(self._resident)

    def _name_adapter(self, name: str) -> None:
        self._adapter_name[name] = f"run{len(self._adapter_name)}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"

    def add(self, run: LoadedRun) -> None:
        """Serve a run that finished after start-up (names are only ever added, so readers never see one vanish)."""
        if run.name not in self.runs and run.name != DEFAULT_MODEL:
            self._name_adapter(run.name)
            self.runs[run.name] = run

    # ---- registered names following their champion (serving/champion.py) ------------------------------------
    def resolve(self, name: str) -> str:
        """The run a requested model name means: a registered name's champion run, else the name itself."""
        return self.aliases.get(name, name)

    def ensure(self, run_dir: Path) -> str | None:
        """The pool name of a finished run folder, loading it if new; None when it is not a finished run or its
        folder name is taken by another run."""
        run_dir = Path(run_dir).resolve()
        known = self.runs.get(run_dir.name)
        if known is not None:
            return run_dir.name if Path(known.path).resolve() == run_dir else None
        try:
            self.add(load_run(run_dir))
        except TuneforgeError as exc:
            log.warning("cannot serve %s: %s", run_dir, exc)
            return None
        return run_dir.name

    @property
    def shared_bases(self) -> int:
        """Base models in memory that hold adapter runs (one per share key)."""
        return len(self._shared)

    def acquire(self, name: str) -> LoadedRun:
        """The run, loaded, with its adapter active."""
        name = self.resolve(name)
        run = self.runs[name]
        if not run.is_adapter:
            run.loaded(self.device)
            return run
        key = share_key(run)
        if name in self._resident:
            self._resident.move_to_end(name)
        else:
            self._make_room()
            self._load(run, key)
            self._resident[name] = key
        if key is not None:
            self._shared[key].set_adapter(self._adapter_name[name], inference_mode=True)
        return run

    def _load(self, run: LoadedRun, key: str | None) -> None:
        self.loads += 1
        if key is None:
            run.loaded(self.device)
            return
        model = self._shared.get(key)
        adapter = self._adapter_name[run.name]
        if model is None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(run.build_base(self.device), str(run.model_dir), adapter_name=adapter,
                                              is_trainable=False)
            model.eval()
            self._shared[key] = model
        else:
            model.load_adapter(str(run.model_dir), adapter_name=adapter, is_trainable=False,
                               torch_device=self.device)
        run.share(model)

    def _make_room(self) -> None:
        while len(self._resident) >= self.max_adapters:
            old, key = self._resident.popitem(last=False)
            self.runs[old].release()
            if key is None:
                continue
            others = [n for n, k in self._resident.items() if k == key]
            if not others:  # its last adapter: the base goes too
                del self._shared[key]
                continue
            model = self._shared[key]
            model.set_adapter(self._adapter_name[others[0]], inference_mode=True)  # never delete the active one
            model.delete_adapter(self._adapter_name[old])

    def default_encoder(self) -> tuple[Any, Any]:
        """The bundled all-MiniLM-L6-v2 (model id `default`), loaded on first use."""
        if self._default is None:
            from tuneforge.evaluation.embeddings import load_encoder
            from tuneforge.models.loading import default_model_path, load_tokenizer

            path = str(default_model_path())
            self._default = (load_encoder(path).to(self.device), load_tokenizer(path))
        return self._default
