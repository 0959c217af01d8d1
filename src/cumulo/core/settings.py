"""Where state lives and where clients find the server: CUMULO_HOME, CUMULO_URL, CUMULO_DATABASE_URL,
CUMULO_TOKEN."""

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


def token() -> str | None:
    """The API token a client sends: CUMULO_TOKEN, else the admin token `cumulo up` wrote to
    $CUMULO_HOME/token on its first start (readable only by its owner)."""
    value = os.environ.get("CUMULO_TOKEN")
    if value:
        return value.strip()
    try:
        return (home() / "token").read_text().strip() or None
    except OSError:
        return None


def auth_headers(explicit: str | None = None) -> dict[str, str]:
    value = explicit or token()
    return {"authorization": f"Bearer {value}"} if value else {}


def workspace() -> str | None:
    """The workspace a client asks to act in (CUMULO_WORKSPACE); None: its token's own."""
    return os.environ.get("CUMULO_WORKSPACE") or None
