"""``cumulo sim`` through ``run_cli``."""

from __future__ import annotations

import json

import pytest

from cumulo.sim.cli import run_cli


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"t_ms": i * 200}) + "\n" for i in range(3000)))
    return str(p)


def test_json_output(trace, capsys):
    assert run_cli([trace, "--policy", "hpa,predictive", "--json", "--service-time", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in out["runs"]] == ["hpa", "predictive"]
    for r in out["runs"]:
        assert {"slo_attainment", "latency_p50_s", "latency_p99_s", "replica_seconds", "cost",
                "seconds_under_provisioned", "scaling_actions", "cold_starts"} <= set(r)


def test_sweep_and_table(trace, capsys):
    assert run_cli([trace, "--policy", "kpa", "--sweep"]) == 0
    out = capsys.readouterr().out
    assert out.count("kpa") == 8


def test_policy_options_and_errors(trace, capsys):
    assert run_cli([trace, "--policy", "predictive", "--set", "z=0.5", "--json"]) == 0
    capsys.readouterr()
    assert run_cli([trace, "--policy", "predictive", "--set", "nonsense=1"]) == 2
    assert run_cli([trace, "--policy", "nope"]) == 2
    assert run_cli([trace, "--min-replicas", "3", "--max-replicas", "2"]) == 2
    assert "max_replicas" in capsys.readouterr().err


def test_plot(trace, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the optional 'sim' extra (matplotlib)")
    png = tmp_path / "p.png"
    assert run_cli([trace, "--policy", "hpa,oracle", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep_png = tmp_path / "s.png"
    assert run_cli([trace, "--policy", "hpa", "--sweep", "--plot", str(sweep_png)]) == 0
    assert sweep_png.stat().st_size > 0


def test_eval_from_past_the_end_of_the_trace_is_an_error(trace, capsys):
    """The trace is 601 s long (3000 requests 0.2 s apart, 1 s steps); evaluating from 700 s used to
    report 100 % SLO attainment on zero requests."""
    assert run_cli([trace, "--policy", "hpa", "--eval-from", "700", "--json"]) == 2
    err = capsys.readouterr().err
    assert "eval_from" in err and "700" in err and "601 s" in err
    assert run_cli([trace, "--policy", "hpa", "--eval-from", "700", "--sweep"]) == 2
    assert run_cli([trace, "--policy", "hpa", "--eval-from", "-5"]) == 2
    assert "eval_from" in capsys.readouterr().err


def test_an_evaluated_part_without_requests_is_an_error(tmp_path, capsys):
    """Requests only in the first minute, then one at 1000 s: from 100 s to 999 s nothing arrives,
    but the trace runs to 1001 s, so --eval-from 100 is inside it yet leaves one request; with the
    last one cut out (duration ends at 60 s) any later start is past the end."""
    p = tmp_path / "gap.jsonl"
    p.write_text("".join(json.dumps({"t_ms": i * 1000}) + "\n" for i in range(60)) + json.dumps({"t_ms": 1_000_000}) + "\n")
    assert run_cli([str(p), "--policy", "hpa", "--eval-from", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["requests"] == 1
    # a part with no request at all: SLO attainment is undefined, not 100 %
    from cumulo.sim.load import ServiceModel, build_load
    from cumulo.sim.model import ReplicaModel, simulate
    from cumulo.sim.traces import load_trace

    load = build_load(load_trace(p), ServiceModel())
    m = simulate(load, "hpa", ReplicaModel(), eval_from=1000.5).metrics
    assert m["requests"] == 0
    assert m["slo_attainment"] != m["slo_attainment"]  # nan: no request to attain anything
    assert run_cli([str(p), "--policy", "hpa", "--eval-from", "1000.5"]) == 2
    assert "no requests" in capsys.readouterr().err
