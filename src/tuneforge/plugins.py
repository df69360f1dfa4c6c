"""A tiny name -> class registry shared by the plug-in seams (tasks, methods, sources).

A plug-in is one file that decorates its class with `@REGISTRY.register`; the package's `__init__` imports every
module in its folder, so adding a file is enough to make it available in configs and the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        name = cls.name  # type: ignore[attr-defined]
        if name in self._items and self._items[name] is not cls:
            raise RuntimeError(f"two {self.kind}s registered as {name!r}")
        self._items[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        from tuneforge.errors import ConfigError

        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}", key=self.kind,
                              fix=f"use one of: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[type[T]]:
        return iter(self._items[n] for n in self.names())


def import_plugins(specs: list[str], source: object = "<config>") -> None:
    """Import a config's `plugins`: module names (on the Python path) or .py files; each registers itself."""
    import importlib.util
    import sys
    from pathlib import Path

    from tuneforge.errors import ConfigError

    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ConfigError("must be a list of module names or .py files", file=str(source), key="plugins",
                          fix="e.g. plugins: [my_tasks] or plugins: [./my_task.py]")
    for spec in specs:
        try:
            if spec.endswith(".py"):
                path = Path(spec).expanduser().resolve()
                name = f"tuneforge_plugin_{path.stem}"
                if name in sys.modules:
                    continue
                loader_spec = importlib.util.spec_from_file_location(name, path)
                if loader_spec is None or loader_spec.loader is None or not path.is_file():
                    raise FileNotFoundError(str(path))
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module
                loader_spec.loader.exec_module(module)
            else:
                importlib.import_module(spec)
        except (ImportError, FileNotFoundError, SyntaxError) as exc:
            raise ConfigError(f"cannot import plug-in {spec!r} ({type(exc).__name__}: {exc})", file=str(source),
                              key="plugins", fix="give an importable module name or the path of a .py file") from None


def import_submodules(package_name: str) -> None:
    """Import every module of a package so their `register` decorators run."""
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{package_name}.{info.name}")
