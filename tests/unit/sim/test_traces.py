"""Trace loaders: every format, and bad rows named by line."""

from __future__ import annotations

import numpy as np
import pytest

from cumulo.sim.synth import exact_arrivals, step_counts
from cumulo.sim.traces import RequestTrace, TraceError, WindowTrace, load_trace

AZURE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_azure_csv(tmp_path):
    p = _write(tmp_path, "a.csv", AZURE_HEAD + "2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n")
    t = load_trace(p)
    assert isinstance(t, RequestTrace)
    assert list(t.times) == pytest.approx([0.0, 0.052])
    assert list(t.input_tokens) == [4808, 3180]


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("2023-11-16 18:17:05,1,1\n2023-11-16 18:17:04,1,1\n", 3, "not sorted"),
        ("2023-11-16 18:17:05,1,1\nyesterday,1,1\n", 3, "date-time"),
        ("2023-11-16 18:17:05,1\n", 2, "3 columns"),
        ("2023-11-16 18:17:05,x,1\n", 2, "ContextTokens"),
        ("2023-11-16 18:17:05,-1,1\n", 2, ">= 0"),
    ],
)
def test_azure_bad_rows_name_the_line(tmp_path, body, line, words):
    p = _write(tmp_path, "a.csv", AZURE_HEAD + body)
    with pytest.raises(TraceError, match=words) as e:
        load_trace(p)
    assert e.value.line == line
    assert f"a.csv:{line}" in str(e.value)


def test_jsonl(tmp_path):
    p = _write(tmp_path, "t.jsonl", '{"t_ms": 1000}\n\n{"t_ms": 1500, "input_tokens": 5, "output_tokens": 2}\n')
    t = load_trace(p)
    assert list(t.times) == [0.0, 0.5]
    assert list(t.output_tokens) == [0, 2]


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ('{"t_ms": 5}\n{"t_ms": 6}\n{"t_ms": 4}\n', 3, "not sorted"),
        ('{"t_ms": 5}\nnot json\n', 2, "invalid JSON"),
        ('{"ms": 5}\n', 1, "missing"),
        ('{"t_ms": "5"}\n', 1, "must be a number"),
        ("[1]\n", 1, "JSON object"),
    ],
)
def test_jsonl_bad_rows_name_the_line(tmp_path, body, line, words):
    with pytest.raises(TraceError, match=words) as e:
        load_trace(_write(tmp_path, "t.jsonl", body))
    assert e.value.line == line


def test_servegen_chunk_and_directory(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    _write(d, "chunk-0-trace.csv", "0,1.0,1.0,Exponential,1,1\n600,0,0,,0,0\n")
    _write(d, "chunk-1-trace.csv", "0,2.0,2.0,Gamma,0.25,1\n600,3.0,1.5,Weibull,0.6,1\n")
    t = load_trace(d)
    assert isinstance(t, WindowTrace)
    assert len(t.clients) == 2
    assert t.duration == 1200
    counts = step_counts(t, 1.0, seed=1)
    assert len(counts) == 1200
    assert counts[:600].mean() == pytest.approx(3.0, rel=0.3)
    times = exact_arrivals(t, seed=1)
    assert np.all(np.diff(times) >= 0)
    assert len(times) == pytest.approx(600 * 3 + 600 * 3, rel=0.3)


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("0,1,1,Gamma,1,1\n0,1,1,Gamma,1,1\n", 2, "not sorted"),
        ("0,1,1,Gamma,1\n", 1, "6 columns"),
        ("0,1,1,Pareto,1,1\n", 1, "unknown"),
        ("0,-1,1,Gamma,1,1\n", 1, ">= 0"),
        ("0,nan,1,Gamma,1,1\n", 1, "finite"),
    ],
)
def test_servegen_bad_rows_name_the_line(tmp_path, body, line, words):
    with pytest.raises(TraceError, match=words) as e:
        load_trace(_write(tmp_path, "chunk-3-trace.csv", body))
    assert e.value.line == line


def test_servegen_total(tmp_path):
    t = load_trace(_write(tmp_path, "m-total.csv", "t_start_s,total_rate_rps,active_clients\n0,10.5,3\n600,2,1\n"))
    assert [w.rate for w in t.clients[0]] == [10.5, 2]
    with pytest.raises(TraceError, match="not sorted") as e:
        load_trace(_write(tmp_path, "x-total.csv", "t_start_s,total_rate_rps,active_clients\n600,1,1\n0,2,1\n"))
    assert e.value.line == 3


def test_missing_and_empty(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="no ServeGen"):
        load_trace(tmp_path)
    with pytest.raises(TraceError, match="no requests"):
        load_trace(_write(tmp_path, "e.jsonl", "\n"))
