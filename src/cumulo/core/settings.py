"""Where state lives and where clients find the server: CUMULO_HOME, CUMULO_URL, CUMULO_DATABASE_URL."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 8200
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def home() -> Path:
    return Path(os.environ.get("CUMULO_HOME") or Path.home() / ".cumulo").expanduser().resolve()


def server_url() -> str:
    return os.environ.get("CUMULO_URL", DEFAULT_URL).rstrip("/")


def database_url(home_dir: Path | None = None) -> str:
    url = os.environ.get("CUMULO_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{(home_dir or home()) / 'cumulo.db'}"
