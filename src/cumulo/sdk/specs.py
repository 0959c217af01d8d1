"""Read a spec file the way the CLI does: relative paths resolve against the file's folder."""

from __future__ import annotations

from pathlib import Path

from cumulo.core.errors import InvalidSpec
from cumulo.core.specs import JobSpec, load_spec_text


def load_spec(path: str | Path) -> JobSpec:
    """Load a YAML spec; `workdir` (default: the file's folder) becomes absolute."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InvalidSpec(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise InvalidSpec(f"{path}: cannot read it as a YAML spec ({type(exc).__name__})") from None
    spec = load_spec_text(text, source=str(path))
    base = p.resolve().parent
    workdir = (base / spec.workdir).resolve() if spec.workdir else base
    return spec.model_copy(update={"workdir": str(workdir)})
