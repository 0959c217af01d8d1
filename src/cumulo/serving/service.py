"""The user-facing half of the Service runtime: `Service`, `@handler`, `Batch`.

This module imports only the standard library, so `import cumulo` and the CLI stay light; the
HTTP side (FastAPI, uvicorn, Prometheus) lives in `cumulo.serving.app` and `cumulo.serving.runner`.

    class Digits(cumulo.Service):
        def setup(self):                       # runs once, after the port is open; sync or async
            self.model = load()

        @cumulo.handler                        # POST /predict, JSON body {"pixels": [...]}
        def predict(self, pixels: list[float]) -> Prediction:
            ...

        @cumulo.handler(batch=cumulo.Batch(max_size=32, max_wait_ms=5))
        def embed(self, text: list[str]) -> list[list[float]]:   # lists in, lists out
            ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

__all__ = ["Batch", "HandlerConfig", "Service", "handler", "handlers_of"]

F = TypeVar("F", bound=Callable[..., Any])

RESERVED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})


@dataclass(frozen=True)
class Batch:
    """Dynamic batching for one handler.

    Requests stay one item each over HTTP; the runtime groups up to `max_size` of them and calls the
    method once with a list per parameter. A batch starts when it is full or when its oldest request
    has waited `max_wait_ms`, whichever comes first; while a batch runs, the next one fills up.
    """

    max_size: int = 32
    max_wait_ms: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_size, int) or self.max_size < 1:
            raise ValueError(f"Batch.max_size must be an integer >= 1, got {self.max_size!r}")
        if self.max_wait_ms < 0:
            raise ValueError(f"Batch.max_wait_ms must be >= 0, got {self.max_wait_ms!r}")


@dataclass(frozen=True)
class HandlerConfig:
    """What `@handler` records on a method."""

    name: str
    path: str
    method: str = "POST"
    batch: Batch | None = None
    max_concurrency: int | None = None
    max_queue: int = 0
    timeout: float | None = None


@overload
def handler(fn: F, /) -> F: ...


@overload
def handler(
    *,
    path: str | None = None,
    method: str = "POST",
    batch: Batch | None = None,
    max_concurrency: int | None = None,
    max_queue: int = 0,
    timeout: float | None = None,
) -> Callable[[F], F]: ...


def handler(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    path: str | None = None,
    method: str = "POST",
    batch: Batch | None = None,
    max_concurrency: int | None = None,
    max_queue: int = 0,
    timeout: float | None = None,
) -> Any:
    """Mark a Service method as an HTTP handler.

    - path: defaults to `/<method name>`; method: POST (default) or GET.
    - Parameters, with their type annotations, become the JSON request body (query parameters for
      GET); the return annotation is the response schema. Both appear in `/openapi.json`.
    - batch: `Batch(max_size, max_wait_ms)`; each parameter is then annotated `list[T]` and the
      method returns a list with one result per item.
    - max_concurrency: at most this many requests run at once; up to `max_queue` more wait for a
      slot (default 0), and any beyond that get 503 with Retry-After at once.
    - timeout: seconds; a request not answered in time gets 504 (queueing and batching included).
    - A generator (sync or async) streams: chunked transfer, or server-sent events when the client
      sends `Accept: text/event-stream`.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise TypeError("@handler decorates a method")
        name = f.__name__
        p = path or f"/{name}"
        if not p.startswith("/"):
            p = "/" + p
        if p in RESERVED_PATHS:
            raise ValueError(f"handler {name}: path {p} is reserved by the runtime")
        m = method.upper()
        if m not in ("POST", "GET"):
            raise ValueError(f"handler {name}: method must be POST or GET, got {method!r}")
        if batch is not None and not isinstance(batch, Batch):
            raise TypeError(f"handler {name}: batch must be a cumulo.Batch, got {type(batch).__name__}")
        if batch is not None and (inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)):
            raise TypeError(f"handler {name}: a streaming (generator) handler cannot be batched")
        if batch is not None and m == "GET":
            raise ValueError(f"handler {name}: batched handlers take a JSON body; use POST")
        if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency < 1):
            raise ValueError(f"handler {name}: max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        if not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"handler {name}: max_queue must be an integer >= 0, got {max_queue!r}")
        if max_queue and max_concurrency is None:
            raise ValueError(f"handler {name}: max_queue needs max_concurrency")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"handler {name}: timeout must be > 0 seconds, got {timeout!r}")
        f.__cumulo_handler__ = HandlerConfig(  # type: ignore[attr-defined]
            name=name, path=p, method=m, batch=batch,
            max_concurrency=max_concurrency, max_queue=max_queue, timeout=timeout,
        )
        return f

    if fn is not None:
        return mark(fn)
    return mark


class Service:
    """Base class of a served model. Subclass it, load the model in `setup()`, mark handlers.

    `__init__` must stay cheap (it runs before the port opens); do the slow work in `setup()`,
    which runs once after the server is listening (in a thread when sync, on the event loop when
    async). `/readyz` answers 200 only once it has returned. `teardown()` runs at shutdown, after
    in-flight requests have finished.
    """

    def setup(self) -> Any:
        """Load the model. Sync or async."""

    def teardown(self) -> Any:
        """Release resources at shutdown. Sync or async."""


def handlers_of(cls: type) -> list[tuple[HandlerConfig, Callable[..., Any]]]:
    """The handlers a Service class defines (its own and inherited), in definition order."""
    seen: dict[str, tuple[HandlerConfig, Callable[..., Any]]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            cfg = getattr(value, "__cumulo_handler__", None)
            if isinstance(cfg, HandlerConfig):
                seen[attr] = (cfg, value)
            elif attr in seen:  # overridden without @handler: no longer a handler
                del seen[attr]
    paths: dict[str, str] = {}
    for cfg, _ in seen.values():
        if cfg.path in paths:
            raise ValueError(f"handlers {paths[cfg.path]} and {cfg.name} share the path {cfg.path}")
        paths[cfg.path] = cfg.name
    return list(seen.values())
