"""Build the ASGI app (FastAPI) of a Service: handlers, /healthz, /readyz, /metrics, setup, drain."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pydantic
import pydantic_core
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import TypeAdapter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cumulo.serving._batching import Batcher
from cumulo.serving._metrics import HandlerMetrics, Metrics
from cumulo.serving._signature import Signature, analyze
from cumulo.serving.service import HandlerConfig, Service, handlers_of

log = logging.getLogger("cumulo.serving")

HANDLER_THREADS = 40  # like FastAPI's thread pool for sync endpoints


class OutputError(Exception):
    """A handler's result does not match its return annotation."""


class Rejected(Exception):
    """max_concurrency (+ max_queue) reached: answered 503 at once."""


class Limiter:
    """At most `limit` at once; `queue` more may wait; beyond that, Rejected."""

    def __init__(self, limit: int, queue: int) -> None:
        self._sem = asyncio.Semaphore(limit)
        self._cap = limit + queue
        self._count = 0

    async def __aenter__(self) -> None:
        if self._count >= self._cap:
            raise Rejected
        self._count += 1
        try:
            await self._sem.acquire()
        except BaseException:
            self._count -= 1
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()
        self._count -= 1


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _describe(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


class Runtime:
    """The live state of one replica: the Service instance, readiness, metrics, handlers."""

    def __init__(
        self,
        service: Service,
        on_setup_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.service = service
        self.metrics = Metrics()
        self.ready = False
        self.draining = False
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.on_setup_error = on_setup_error
        self.executor = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="cumulo-handler")
        self.batchers: list[Batcher] = []
        self.by_endpoint: dict[Any, HandlerMetrics] = {}
        self.app: FastAPI | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_setup(self) -> None:
        loop = asyncio.get_running_loop()
        setup = self.service.setup
        if inspect.iscoroutinefunction(setup):
            async def run_async() -> None:
                try:
                    await setup()
                except Exception as exc:
                    self._setup_done(exc)
                else:
                    self._setup_done(None)
            self._setup_task = loop.create_task(run_async(), name="cumulo-setup")
        else:
            def run_sync() -> None:
                try:
                    result = setup()
                    if inspect.isawaitable(result):  # a sync def that returned a coroutine
                        raise TypeError("setup() returned an awaitable: declare it `async def setup`")
                except BaseException as exc:  # noqa: BLE001 - reported, then the replica exits
                    loop.call_soon_threadsafe(self._setup_done, exc)
                else:
                    loop.call_soon_threadsafe(self._setup_done, None)
            # a daemon thread, so a SIGTERM during a long model load does not wait for it
            threading.Thread(target=run_sync, name="cumulo-setup", daemon=True).start()

    def _setup_done(self, exc: BaseException | None) -> None:
        if exc is None:
            try:
                assert self.app is not None
                self.app.openapi()  # readiness exercises the real app: the schemas must build
            except Exception as e:  # noqa: BLE001
                exc = e
        if exc is not None:
            self.error = exc
            log.error("setup failed: %s", _describe(exc))
            if self.on_setup_error is not None:
                self.on_setup_error(exc)
            return
        self.ready = not self.draining
        self.ready_after = time.monotonic() - self.started
        self.metrics.ready.set(1 if self.ready else 0)
        log.info("ready: setup finished %.3fs after start", self.ready_after)

    def drain(self) -> None:
        """Stop reporting ready (SIGTERM): in-flight and already-connected requests still finish."""
        self.draining = True
        self.ready = False
        self.metrics.ready.set(0)

    async def stop(self) -> None:
        self.ready = False
        for b in self.batchers:
            await b.close()
        if self.error is None and self.ready_after is not None:
            try:
                result = self.service.teardown()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001
                log.exception("teardown failed")
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- endpoints -----------------------------------------------------------------------------
    def not_ready(self) -> JSONResponse:
        if self.error is not None:
            return _error(503, f"setup failed: {_describe(self.error)}")
        if self.draining:
            return _error(503, "draining: this replica is shutting down", {"Retry-After": "1"})
        return _error(503, "not ready: setup() is still running", {"Retry-After": "1"})

    def build_endpoint(self, cfg: HandlerConfig, sig: Signature, fn: Callable[..., Any]) -> Callable[..., Any]:
        hm = HandlerMetrics(self.metrics, cfg.name, batched=cfg.batch is not None)
        names = sig.params
        body_is_param = sig.body_is_param
        executor = self.executor
        timeout = cfg.timeout
        limiter = Limiter(cfg.max_concurrency, cfg.max_queue) if cfg.max_concurrency else None
        rt = self

        if cfg.batch is not None:
            async def run_batch(items: list[dict[str, Any]]) -> list[Any]:
                columns = {n: [it[n] for it in items] for n in names}
                if sig.is_async:
                    return await fn(**columns)
                return await asyncio.get_running_loop().run_in_executor(
                    executor, functools.partial(fn, **columns))

            batcher = Batcher(run_batch, cfg.batch.max_size, cfg.batch.max_wait_ms / 1000.0,
                              on_batch=hm.batch_size.observe,  # type: ignore[union-attr]
                              name=cfg.name)
            self.batchers.append(batcher)
            call: Callable[[dict[str, Any]], Any] = batcher.submit
        elif sig.is_async:
            async def call(kwargs: dict[str, Any]) -> Any:
                return await fn(**kwargs)
        else:
            async def call(kwargs: dict[str, Any]) -> Any:
                return await asyncio.get_running_loop().run_in_executor(
                    executor, functools.partial(fn, **kwargs))

        if limiter is not None:
            inner = call

            async def call(kwargs: dict[str, Any]) -> Any:
                async with limiter:
                    return await inner(kwargs)

        def arguments(values: dict[str, Any]) -> dict[str, Any]:
            if "body" not in values:
                return values  # GET query parameters, or no parameters at all
            body = values["body"]
            if body_is_param:
                return {names[0]: body}
            return {n: getattr(body, n) for n in names}

        # The endpoint checks and serializes the result itself (FastAPI's response_model is still
        # declared, for the OpenAPI schema): a result that does not match the return type is then
        # a counted, logged 500 with a clear message, and the check costs one pydantic call.
        adapter = TypeAdapter(sig.response) if sig.response is not None and not sig.stream else None
        dump = pydantic_core.to_json

        def render(result: Any) -> Response:
            if isinstance(result, Response):
                return result
            if adapter is not None:
                try:
                    body = adapter.dump_json(adapter.validate_python(result))
                except pydantic.ValidationError as exc:
                    raise OutputError(f"{cfg.name} returned a value that does not match its return type: "
                                      f"{exc}") from exc
            else:
                body = dump(result)
            return Response(body, media_type="application/json")

        if sig.stream:
            endpoint = self._stream_endpoint(cfg, sig, fn, hm, limiter, arguments)
        else:
            async def endpoint(**values: Any) -> Any:
                if not rt.ready:
                    hm.count(503)
                    return rt.not_ready()
                hm.in_flight.inc()
                t0 = time.perf_counter()
                status = 200
                try:
                    kwargs = arguments(values)
                    if timeout is None:
                        return render(await call(kwargs))
                    return render(await asyncio.wait_for(call(kwargs), timeout))
                except HTTPException as exc:
                    status = exc.status_code
                    raise
                except Rejected:
                    status = 503
                    return _error(503, f"busy: {cfg.name} is at max_concurrency={cfg.max_concurrency}",
                                  {"Retry-After": "1"})
                except TimeoutError:
                    status = 504
                    return _error(504, f"timeout: {cfg.name} took longer than {timeout}s")
                except Exception as exc:  # noqa: BLE001
                    status = 500
                    log.exception("handler %s failed", cfg.name)
                    return _error(500, _describe(exc))
                finally:
                    hm.in_flight.dec()
                    hm.latency.observe(time.perf_counter() - t0)
                    hm.count(status)

        endpoint.__signature__ = self._fastapi_signature(sig)  # type: ignore[attr-defined]
        endpoint.__name__ = cfg.name
        endpoint.__doc__ = fn.__doc__
        self.by_endpoint[endpoint] = hm
        return endpoint

    @staticmethod
    def _fastapi_signature(sig: Signature) -> inspect.Signature:
        P = inspect.Parameter
        params: list[inspect.Parameter] = []
        if sig.request_model is not None:
            params.append(P("body", P.KEYWORD_ONLY, annotation=sig.request_model))
        for name, (ann, default) in sig.query.items():
            params.append(P(name, P.KEYWORD_ONLY, annotation=ann,
                            default=P.empty if default is ... else default))
        if sig.stream:
            params.append(P("request", P.KEYWORD_ONLY, annotation=Request))
        return inspect.Signature(params)

    def _stream_endpoint(self, cfg: HandlerConfig, sig: Signature, fn: Callable[..., Any],
                         hm: HandlerMetrics, limiter: Limiter | None,
                         arguments: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        rt = self
        executor = self.executor
        timeout = cfg.timeout
        text_items = sig.response is str

        def open_stream(kwargs: dict[str, Any]) -> AsyncIterator[Any]:
            if sig.is_async:
                return fn(**kwargs)
            gen = fn(**kwargs)
            return _iterate_in_thread(gen, executor)

        async def endpoint(**values: Any) -> Any:
            request: Request = values.pop("request")
            if not rt.ready:
                hm.count(503)
                return rt.not_ready()
            sse = "text/event-stream" in request.headers.get("accept", "")
            hm.in_flight.inc()
            t0 = time.perf_counter()
            deadline = None if timeout is None else time.monotonic() + timeout
            state = {"status": 200, "held": False}
            agen: Any = None

            def finish() -> None:
                hm.in_flight.dec()
                hm.latency.observe(time.perf_counter() - t0)
                hm.count(state["status"])

            async def next_item() -> Any:
                if deadline is None:
                    return await agen.__anext__()
                return await asyncio.wait_for(agen.__anext__(), max(deadline - time.monotonic(), 0.0))

            try:
                if limiter is not None:
                    if deadline is None:
                        await limiter.__aenter__()
                    else:
                        await asyncio.wait_for(limiter.__aenter__(), timeout)
                    state["held"] = True
                agen = open_stream(arguments(values))
                try:
                    first = await next_item()
                    empty = False
                except StopAsyncIteration:
                    first, empty = None, True
            except BaseException as exc:
                if agen is not None:
                    await _aclose(agen)
                if state["held"]:
                    await limiter.__aexit__(None, None, None)  # type: ignore[union-attr]
                if isinstance(exc, Rejected):
                    state["status"] = 503
                    resp: Any = _error(503, f"busy: {cfg.name} is at max_concurrency={cfg.max_concurrency}",
                                       {"Retry-After": "1"})
                elif isinstance(exc, TimeoutError):
                    state["status"] = 504
                    resp = _error(504, f"timeout: {cfg.name} sent nothing within {timeout}s")
                elif isinstance(exc, HTTPException):
                    state["status"] = exc.status_code
                    finish()
                    raise
                elif isinstance(exc, Exception):
                    state["status"] = 500
                    log.exception("handler %s failed", cfg.name)
                    resp = _error(500, _describe(exc))
                else:
                    finish()
                    raise
                finish()
                return resp

            if sse:
                media = "text/event-stream"
            elif text_items or (sig.response is None and isinstance(first, str)):
                media = "text/plain; charset=utf-8"
            else:
                media = "application/x-ndjson"

            async def body() -> AsyncIterator[bytes]:
                try:
                    if empty:
                        return
                    yield _encode(first, sse)
                    while True:
                        try:
                            item = await next_item()
                        except StopAsyncIteration:
                            return
                        yield _encode(item, sse)
                except TimeoutError:
                    state["status"] = 504
                    log.warning("handler %s: stream cut at its %ss timeout", cfg.name, timeout)
                    if sse:
                        yield _sse_event("error", {"detail": f"timeout: {cfg.name} ran past {timeout}s"})
                        return
                    raise
                except Exception as exc:
                    state["status"] = 500
                    log.exception("handler %s failed mid-stream", cfg.name)
                    if sse:
                        yield _sse_event("error", {"detail": _describe(exc)})
                        return
                    raise  # chunked: the connection is cut, so the client sees an incomplete body
                finally:
                    await _aclose(agen)
                    if state["held"]:
                        await limiter.__aexit__(None, None, None)  # type: ignore[union-attr]
                    finish()

            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(body(), media_type=media, headers=headers)

        return endpoint


async def _iterate_in_thread(gen: Any, executor: ThreadPoolExecutor) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    done = object()
    try:
        while True:
            item = await loop.run_in_executor(executor, next, gen, done)
            if item is done:
                return
            yield item
    finally:
        try:
            gen.close()
        except ValueError:  # still running in its thread (cut by a timeout): it ends on its own
            pass


async def _aclose(agen: Any) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001
            log.debug("closing a stream failed", exc_info=True)


def _encode(item: Any, sse: bool) -> bytes:
    if sse:
        data = item if isinstance(item, str) else pydantic_core.to_json(item).decode()
        return ("".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return pydantic_core.to_json(item) + b"\n"


def _sse_event(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {pydantic_core.to_json(data).decode()}\n\n".encode()


def create_app(
    service: type[Service] | Service,
    *,
    on_setup_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The ASGI app of a Service (class or instance). `app.state.cumulo` is its Runtime."""
    instance = service() if isinstance(service, type) else service
    cls = type(instance)
    if not isinstance(instance, Service):
        raise TypeError(f"{cls.__name__} is not a cumulo.Service subclass")
    handlers = handlers_of(cls)
    rt = Runtime(instance, on_setup_error=on_setup_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt.start_setup()
        try:
            yield
        finally:
            await rt.stop()

    doc = inspect.getdoc(cls)
    app = FastAPI(title=cls.__name__, description=doc if doc and cls.__doc__ else "",
                  version="1", lifespan=lifespan, strict_content_type=False)
    app.state.cumulo = rt
    rt.app = app

    for cfg, fn in handlers:
        sig = analyze(cls, cfg, fn)
        bound = getattr(instance, fn.__name__)
        endpoint = rt.build_endpoint(cfg, sig, bound)
        extra = {"x-cumulo-handler": {
            "batch": None if cfg.batch is None else {"max_size": cfg.batch.max_size,
                                                     "max_wait_ms": cfg.batch.max_wait_ms},
            "stream": sig.stream,
            "max_concurrency": cfg.max_concurrency,
            "timeout": cfg.timeout,
        }}
        kw: dict[str, Any] = {}
        if sig.stream:
            kw["response_class"] = StreamingResponse
            item = {} if sig.response is None else {"x-item-type": getattr(sig.response, "__name__", str(sig.response))}
            kw["responses"] = {200: {"description": "a stream: chunked, or server-sent events with "
                                                    "Accept: text/event-stream",
                                     "content": {"text/event-stream": {}, "application/x-ndjson": {}}, **item}}
        elif sig.response is not None:
            kw["response_model"] = sig.response
        doc = inspect.getdoc(fn) or ""
        app.add_api_route(
            cfg.path, endpoint, methods=[cfg.method], name=cfg.name, operation_id=cfg.name,
            summary=doc.split("\n", 1)[0] if doc else cfg.name, description=doc,
            openapi_extra=extra, **kw,
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"alive"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        if rt.ready:
            return Response(b'{"status":"ready"}', media_type="application/json")
        if rt.error is not None:
            return JSONResponse({"status": "failed", "detail": _describe(rt.error)}, status_code=503)
        return JSONResponse({"status": "draining" if rt.draining else "starting"}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        hm = rt.by_endpoint.get(request.scope.get("endpoint"))
        if hm is not None:
            hm.count(422)
        return await request_validation_exception_handler(request, exc)

    return app
