"""Read a spec file the way the CLI does: relative paths resolve against the file's folder."""

from __future__ import annotations

from pathlib import Path

from cumulo.core.errors import InvalidSpec
from typing import Any

from cumulo.core.specs import JobSpec, load_spec_text, load_specs_text


def _read(path: str | Path) -> str:
    p = Path(path)
    try:
        return p.read_text()
    except FileNotFoundError:
        raise InvalidSpec(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise InvalidSpec(f"{path}: cannot read it as a YAML spec ({type(exc).__name__})") from None


def _resolve(spec: Any, path: str | Path) -> Any:
    """A spec that has a `workdir` gets it absolute (default: the file's folder)."""
    if "workdir" not in type(spec).model_fields:
        return spec
    base = Path(path).resolve().parent
    workdir = (base / spec.workdir).resolve() if spec.workdir else base
    return spec.model_copy(update={"workdir": str(workdir)})


def load_spec(path: str | Path) -> JobSpec:
    """Load a YAML spec; `workdir` (default: the file's folder) becomes absolute."""
    return _resolve(load_spec_text(_read(path), source=str(path)), path)


def load_specs(path: str | Path) -> list[Any]:
    """Every document of a (multi-document) YAML file, each a spec of its kind (`cumulo apply`)."""
    return [_resolve(spec, path) for spec in load_specs_text(_read(path), source=str(path))]
