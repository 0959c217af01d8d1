"""Read a log file from an offset, one bounded chunk at a time (for logs and --follow)."""

from __future__ import annotations

MAX_LOG_CHUNK = 1 << 20


def read_chunk(path: str, offset: int) -> tuple[str, int, bool]:
    """(text, new offset, whether the file had more than one chunk's worth left)."""
    offset = max(offset, 0)
    data = b""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_LOG_CHUNK)
    except FileNotFoundError:
        pass
    return data.decode("utf-8", errors="replace"), offset + len(data), len(data) == MAX_LOG_CHUNK
