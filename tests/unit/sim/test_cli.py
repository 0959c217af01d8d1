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
