"""Detector states as plain JSON data, so a reconciler can keep them in the database between passes."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, TypeVar

S = TypeVar("S")


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # "inf", "-inf", "nan": JSON has no such numbers
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def dump(state: Any) -> dict:
    """A detector state (frozen dataclass) as JSON-ready data."""
    return {f.name: _plain(getattr(state, f.name)) for f in dataclasses.fields(state)}


def _restore(v: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    if origin is tuple and isinstance(v, list):
        inner = args[0] if args else Any
        return tuple(_restore(x, inner) for x in v)
    if isinstance(v, list):
        return tuple(_restore(x, Any) for x in v)
    return v


def load(cls: type[S], data: dict) -> S:
    """The inverse of ``dump``: ``load(LevelState, dump(state)) == state``. Unknown keys are refused."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    return cls(**{k: _restore(v, hints.get(k, Any)) for k, v in data.items()})
