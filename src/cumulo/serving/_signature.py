"""Turn a handler's Python signature into request and response schemas (pydantic)."""

from __future__ import annotations

import collections.abc as cabc
import inspect
import typing
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, create_model

from cumulo.serving.service import HandlerConfig

_LIST_ORIGINS = (list, cabc.Sequence, cabc.MutableSequence)
_STREAM_ORIGINS = (
    cabc.Iterator, cabc.Iterable, cabc.Generator,
    cabc.AsyncIterator, cabc.AsyncIterable, cabc.AsyncGenerator,
)


@dataclass(frozen=True)
class Signature:
    params: tuple[str, ...]           # parameter names, in order
    request_model: type[BaseModel] | None  # the JSON body (None: no parameters, or GET)
    body_is_param: bool               # the single parameter is itself the body model
    query: dict[str, tuple[Any, Any]]  # GET: name -> (annotation, default)
    response: Any                     # response schema (per item for batch/stream); None = unknown
    is_async: bool
    stream: bool


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _unwrap_list(hint: Any, what: str) -> Any:
    origin = get_origin(hint)
    if origin in _LIST_ORIGINS:
        args = get_args(hint)
        return args[0] if args else Any
    if hint in (list, cabc.Sequence):
        return Any
    raise TypeError(f"{what} must be annotated list[T] in a batched handler (one T per request), got {hint!r}")


def analyze(cls: type, cfg: HandlerConfig, fn: Any) -> Signature:
    where = f"{cls.__name__}.{cfg.name}"
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # an unresolvable forward reference
        raise TypeError(f"{where}: cannot resolve its type annotations: {exc}") from exc
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params or params[0].name != "self":
        raise TypeError(f"{where}: a handler is a method: its first parameter must be self")
    params = params[1:]
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"{where}: parameter {p.name}: *args and **kwargs are not supported")
        hint = hints.get(p.name, Any)
        if cfg.batch is not None:
            hint = _unwrap_list(hint, f"{where}: parameter {p.name}")
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hint, default)

    is_async_gen = inspect.isasyncgenfunction(fn)
    is_gen = inspect.isgeneratorfunction(fn)
    stream = is_async_gen or is_gen
    is_async = is_async_gen or inspect.iscoroutinefunction(fn)

    ret = hints.get("return", None)
    response: Any = None
    if ret is not None and ret is not type(None) and ret is not Any:
        if stream:
            args = get_args(ret) if get_origin(ret) in _STREAM_ORIGINS else ()
            response = args[0] if args else None
        elif cfg.batch is not None:
            response = _unwrap_list(ret, f"{where}: the return value")
        else:
            response = ret

    body_is_param = False
    request_model: type[BaseModel] | None = None
    query: dict[str, tuple[Any, Any]] = {}
    if cfg.method == "GET":
        query = fields
    elif len(fields) == 1 and cfg.batch is None:
        (name, (hint, _)), = fields.items()
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            request_model, body_is_param = hint, True
    if cfg.method == "POST" and fields and request_model is None:
        request_model = create_model(
            f"{cls.__name__}{_camel(cfg.name)}Request",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
    return Signature(
        params=tuple(fields), request_model=request_model, body_is_param=body_is_param,
        query=query, response=response, is_async=is_async, stream=stream,
    )
