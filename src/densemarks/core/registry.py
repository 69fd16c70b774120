"""Registries are plain dicts from a name to what it builds (heads, losses, optimizers,
schedulers, detectors, TTA modes, ...). `choose` looks a name up and, for an unknown one, says
what is known and what was probably meant; `names` writes the choices for help texts.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import TypeVar

from densemarks.core.errors import DataError

T = TypeVar("T")


def names(registry: Collection[str], last: str = "or") -> str:
    """'a, b or c': the registry's names for a help text or an error."""
    keys = list(registry)
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} {last} {keys[-1]}"


def suggestion(name: object, registry: Collection[str]) -> str:
    """'; did you mean 'x'?' for the registry's nearest name, or '' when none is near."""
    close = difflib.get_close_matches(str(name), list(registry), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(kind: str, name: object, registry: Collection[str]) -> DataError:
    """The error for a name the registry does not hold: the known names and the nearest one."""
    return DataError(None, f"unknown {kind} {name!r} (choose {names(registry)}){suggestion(name, registry)}")


def choose(registry: Mapping[str, T], name: str, kind: str) -> T:
    """registry[name], or a one-line error naming the known names and the nearest match."""
    if name not in registry:
        raise unknown(kind, name, registry)
    return registry[name]
