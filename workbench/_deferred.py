"""Third-party modules that are slow to import, loaded on first use instead.

jsonschema, which Altair imports (so every chart does), imports
``rfc3987_syntax`` at its own import time to check the ``iri`` string format,
and that module compiles some 38 Lark grammars as it loads: 1 to 2 s on this
machine, 5 to 10 s when the machine is busy, for a format no Vega-Lite schema
uses (upstream: python-jsonschema/jsonschema#1428). ``defer()`` puts a
stand-in in ``sys.modules`` whose functions load the real module on their
first call, so the check still works when something asks for it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

SLOW = {"rfc3987_syntax": ("is_valid_syntax",)}
"""Module -> the names importers take from it (``from rfc3987_syntax import is_valid_syntax``)."""


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its names is used."""

    def __init__(self, name: str, names: tuple[str, ...], spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(name, f"deferred by workbench: {name} loads on first use")
        self._real: types.ModuleType | None = None
        # The real module's spec: importlib.util.find_spec(name) keeps answering (optional-dependency checks).
        self.__spec__ = spec
        if spec.submodule_search_locations is not None:
            # A package's stand-in is a package too; ``from pkg import name`` asks for __path__ first.
            self.__path__ = list(spec.submodule_search_locations)
        for attr in names:
            setattr(self, attr, self._forward(attr))

    def _load(self) -> types.ModuleType:
        if self._real is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            self._real = importlib.import_module(self.__name__)
        return self._real

    def _forward(self, attr: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(self._load(), attr)(*args, **kwargs)

        call.__name__ = call.__qualname__ = attr
        return call

    def __getattr__(self, attr: str) -> Any:
        # Any other public name loads the real module; dunders the import system probes do not.
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)


def defer() -> None:
    """Defer each slow module not imported yet (and only while its importer is not loaded either)."""
    if "jsonschema" in sys.modules:
        return
    for name, names in SLOW.items():
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            sys.modules[name] = _Deferred(name, names, spec)
