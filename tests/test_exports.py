"""The public API: ``workbench.__all__`` is sorted and lists exactly the public names.

Like httpx's ``tests/test_exported_members.py``: anything a user can reach as
``wb.<name>`` without an underscore is there on purpose, and is in ``__all__``.
Submodules are attributes of a package as soon as anything imports them, so they
are left out of the comparison; a submodule listed in ``__all__`` (``wb.scorers``)
must be a real workbench submodule.
"""

from __future__ import annotations

import __future__
import types

import workbench

INCLUDED_PRIVATE = {"__version__"}


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules such as workbench.store
        and not isinstance(value, __future__._Feature)  # `from __future__ import annotations` (STYLE.md)
    }


def test_all_is_sorted():
    assert workbench.__all__ == sorted(workbench.__all__)


def test_all_equals_the_public_names():
    assert len(workbench.__all__) == len(set(workbench.__all__))
    exported = {n for n in workbench.__all__ if not isinstance(getattr(workbench, n), types.ModuleType)}
    assert exported == public_names(workbench) | INCLUDED_PRIVATE


def test_exported_submodules_are_workbench_modules():
    for name in workbench.__all__:
        value = getattr(workbench, name)
        if isinstance(value, types.ModuleType):
            assert value.__name__ == f"workbench.{name}"
