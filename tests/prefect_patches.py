"""What every test of a Prefect patch (flows/patching.py) checks first."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from flows.patching import MARK


def assert_installed_once(install: Callable[..., bool], module: ModuleType, name: str) -> None:
    """`install` wrapped Prefect's own `module.name`, and a second call wraps nothing twice."""
    assert install() is True
    assert install(module) is True
    wrapped = getattr(module, name).__wrapped__
    assert wrapped.__module__ == module.__name__
    assert not hasattr(wrapped, MARK)  # Prefect's own, wrapped once
