"""Replace a function of Prefect's by a wrapper of it, once, and only where it has the shape
the wrapper was written for (a Prefect that changed it is left alone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MARK = "_tapeflow_wrapped"


def wrap_once(
    owner: Any,
    name: str,
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
    fits: Callable[[Callable[..., Any]], bool],
) -> bool:
    """Set `owner.name` to `wrap(owner.name)` unless already done; False when `owner` has no
    such function or `fits` refuses it (nothing changed)."""
    current = getattr(owner, name, None)
    if current is None:
        return False
    if getattr(current, MARK, False):
        return True
    if not fits(current):
        return False
    wrapper = wrap(current)
    setattr(wrapper, MARK, True)
    setattr(owner, name, wrapper)
    return True
