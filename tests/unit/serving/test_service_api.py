"""The pure parts of the Service runtime: @handler, signatures, the batcher, error reporting."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stderr

import pytest
from pydantic import BaseModel

from cumulo.serving import Batch, Service, handler
from cumulo.serving._batching import Batcher, BatchSizeError
from cumulo.serving._signature import analyze
from cumulo.serving.runner import _fail
from cumulo.serving.service import handlers_of


class Out(BaseModel):
    label: str


class Example(Service):
    @handler
    def predict(self, pixels: list[float], scale: float = 1.0) -> Out:
        return Out(label="x")

    @handler(batch=Batch(max_size=4, max_wait_ms=2), timeout=1.5)
    async def embed(self, text: list[str]) -> list[list[float]]:
        return [[0.0] for _ in text]

    @handler(method="get", path="info")
    def info(self) -> dict:
        return {}

    @handler
    async def stream(self, n: int) -> AsyncIterator[str]:
        yield "a"

    def not_a_handler(self) -> None:
        pass


def test_handler_records_its_config_and_handlers_are_collected_in_order():
    found = handlers_of(Example)
    assert [cfg.name for cfg, _ in found] == ["predict", "embed", "info", "stream"]
    cfg = dict((c.name, c) for c, _ in found)
    assert cfg["predict"].path == "/predict" and cfg["predict"].method == "POST"
    assert cfg["embed"].batch == Batch(4, 2) and cfg["embed"].timeout == 1.5
    assert cfg["info"].path == "/info" and cfg["info"].method == "GET"


def test_subclass_can_override_and_unmark_handlers():
    class Child(Example):
        @handler(path="/v2/predict")
        def predict(self, pixels: list[float]) -> Out:
            return Out(label="y")

        def stream(self, n: int) -> None:  # overridden without @handler: no longer served
            pass

    assert {c.name: c.path for c, _ in handlers_of(Child)} == {"predict": "/v2/predict", "embed": "/embed",
                                                                "info": "/info"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_concurrency": 0}, "max_concurrency must be an integer >= 1"),
    ({"max_queue": 2}, "max_queue needs max_concurrency"),
    ({"timeout": 0}, "timeout must be > 0"),
    ({"method": "DELETE"}, "method must be POST or GET"),
    ({"path": "/healthz"}, "reserved"),
    ({"batch": {"max_size": 2}}, "batch must be a cumulo.Batch"),
])
def test_bad_handler_options_fail_at_class_definition(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        handler(**kwargs)(lambda self: None)


def test_batch_validates_its_numbers_and_streams_cannot_batch():
    with pytest.raises(ValueError, match="max_size"):
        Batch(max_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batch(max_wait_ms=-1)

    def gen(self, x: list[int]) -> Iterator[int]:
        yield 1
    with pytest.raises(TypeError, match="cannot be batched"):
        handler(batch=Batch())(gen)


def test_two_handlers_on_one_path_are_refused():
    class Clash(Service):
        @handler(path="/a")
        def one(self) -> int:
            return 1

        @handler(path="/a")
        def two(self) -> int:
            return 2

    with pytest.raises(ValueError, match="share the path /a"):
        handlers_of(Clash)


def test_signatures_become_request_models_per_item_for_batches():
    (p_cfg, p_fn), (e_cfg, e_fn), (i_cfg, i_fn), (s_cfg, s_fn) = handlers_of(Example)
    sig = analyze(Example, p_cfg, p_fn)
    assert sig.params == ("pixels", "scale") and sig.response is Out and not sig.stream
    schema = sig.request_model.model_json_schema()
    assert schema["required"] == ["pixels"] and schema["additionalProperties"] is False

    sig = analyze(Example, e_cfg, e_fn)
    assert sig.is_async and sig.response == list[float]  # per item
    assert sig.request_model.model_json_schema()["properties"]["text"]["type"] == "string"

    sig = analyze(Example, i_cfg, i_fn)
    assert sig.request_model is None and sig.query == {}

    sig = analyze(Example, s_cfg, s_fn)
    assert sig.stream and sig.is_async and sig.response is str


def test_batched_parameters_must_be_lists():
    class Bad(Service):
        @handler(batch=Batch())
        def embed(self, text: str) -> list[int]:
            return [1]

    (cfg, fn), = handlers_of(Bad)
    with pytest.raises(TypeError, match="parameter text must be annotated list"):
        analyze(Bad, cfg, fn)


def test_batcher_groups_up_to_max_size_and_keeps_order():
    calls: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0)
        return [i * 2 for i in items]

    async def main() -> list[int]:
        b = Batcher(run, max_size=3, max_wait_s=10.0, on_batch=None)
        try:
            return list(await asyncio.gather(*(b.submit(i) for i in range(6))))
        finally:
            await b.close()

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
    assert calls == [[0, 1, 2], [3, 4, 5]]  # full batches go at once, without waiting 10 s


def test_batcher_reports_errors_to_every_caller_and_skips_cancelled_items():
    sizes: list[int] = []

    async def wrong(items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> None:
        b = Batcher(wrong, max_size=2, max_wait_s=0.0, on_batch=sizes.append)
        results = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
        assert all(isinstance(r, BatchSizeError) for r in results)
        gone = asyncio.ensure_future(b.submit(3))
        await asyncio.sleep(0)
        gone.cancel()
        assert await asyncio.gather(b.submit(4), return_exceptions=True)
        await b.close()

    asyncio.run(main())
    assert sizes[0] == 2 and 1 in sizes[1:]


def test_fail_prints_the_traceback_and_ends_with_one_error_line():
    try:
        raise RuntimeError("first line\nsecond line")
    except RuntimeError as exc:
        err = io.StringIO()
        with redirect_stderr(err):
            assert _fail(exc) == 1
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("Traceback")
    assert lines[-1] == "RuntimeError: first line second line"
