import pytest

from cumulo.core.errors import InvalidSpec
from cumulo.core.specs import load_spec_text, parse_spec
from cumulo.core.units import format_memory, parse_cpu, parse_duration, parse_memory


@pytest.mark.parametrize(
    "text, expected",
    [("4Gi", 4 * 2**30), ("512Mi", 512 * 2**20), ("2G", 2 * 10**9), ("1.5GiB", int(1.5 * 2**30)), (1024, 1024), ("100", 100)],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "4Gx", "-1Gi", -5, True, ""])
def test_parse_memory_rejects(bad):
    with pytest.raises(ValueError):
        parse_memory(bad)


@pytest.mark.parametrize("text, expected", [(2, 2.0), ("0.5", 0.5), ("500m", 0.5), ("1500m", 1.5)])
def test_parse_cpu(text, expected):
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("bad", ["two", "-1", False])
def test_parse_cpu_rejects(bad):
    with pytest.raises(ValueError):
        parse_cpu(bad)


@pytest.mark.parametrize("text, expected", [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("500ms", 0.5)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_format_memory():
    assert format_memory(4 * 2**30) == "4Gi"
    assert format_memory(1536 * 2**20) == "1.5Gi"
    assert format_memory(100) == "100B"


def test_full_job_spec():
    spec = load_spec_text(
        """
kind: Job
name: train-1
command: [python, train.py]
workdir: /tmp
env: {EPOCHS: 3, DEBUG: true}
resources: {cpu: 500m, memory: 2Gi, gpu: 1}
workers: 2
max_retries: 3
backoff: {initial: 2s, max: 1m}
timeout: 1h
"""
    )
    assert spec.name == "train-1"
    assert spec.env == {"EPOCHS": "3", "DEBUG": "true"}
    assert spec.resources.cpu == 0.5 and spec.resources.memory == 2 * 2**30 and spec.resources.gpu == 1
    assert spec.backoff.initial == 2 and spec.backoff.max == 60 and spec.timeout == 3600


def test_defaults():
    spec = parse_spec({"kind": "Job", "name": "a", "command": "true"})
    assert spec.workers == 1 and spec.max_retries == 0 and spec.resources.cpu == 1 and spec.timeout is None


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"name": "Bad_Name", "command": "x"}, "name"),
        ({"name": "a", "command": ""}, "command"),
        ({"name": "a"}, "command"),
        ({"name": "a", "command": "x", "resources": {"memory": "lots"}}, "resources.memory"),
        ({"name": "a", "command": "x", "resources": {"cpu": 0}}, "resources.cpu"),
        ({"name": "a", "command": "x", "resources": {"gpus": 1}}, "resources.gpus"),
        ({"name": "a", "command": "x", "workers": 0}, "workers"),
        ({"name": "a", "command": "x", "max_retries": -1}, "max_retries"),
        ({"name": "a", "command": "x", "timeout": "forever"}, "timeout"),
        ({"name": "a", "command": "x", "env": {"1BAD": "v"}}, "env"),
        ({"name": "a", "command": "x", "env": {"CUMULO_JOB": "v"}}, "env"),
        ({"name": "a", "command": "x", "replicas": 3}, "replicas"),
    ],
)
def test_invalid_spec_names_the_field(doc, field):
    with pytest.raises(InvalidSpec) as info:
        parse_spec({"kind": "Job", **doc}, source="job.yaml")
    fields = [e["field"] for e in info.value.errors]
    assert field in fields, info.value.errors
    assert str(info.value).startswith("job.yaml: ")
    assert field in str(info.value)


def test_unknown_kind():
    with pytest.raises(InvalidSpec, match="kind: 'Jbo' is not a kind cumulo knows; use one of: Job"):
        parse_spec({"kind": "Jbo", "name": "a"})


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(InvalidSpec, match=r"job.yaml: line 3, column \d+: invalid YAML"):
        load_spec_text("kind: Job\nname: a\ncommand: echo: hi\n", source="job.yaml")


def test_yaml_not_a_mapping():
    with pytest.raises(InvalidSpec, match="expected a mapping"):
        load_spec_text("- a\n- b\n")
