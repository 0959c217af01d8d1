"""The bootstrap script: one text for every provider, joining the cluster with the node's labels."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from cumulo.core.errors import InvalidSpec
from cumulo.providers.bootstrap import (
    NODE_ID_LABEL, RAY_VERSION, BootstrapSpec, cumulo_version, label_value, ray_start_args, render,
)


def spec(**kw) -> BootstrapSpec:
    base = dict(node_id="a1b2c3d4e5f6-0", cluster="ray", join_address="10.0.0.5:6379", provider="aws",
                instance_type="g4dn.xlarge", zone="us-east-1a", spot=True, cpus=4.0, memory_bytes=16 * 2**30,
                gpus=1, accelerator="T4", cumulo_version="0.1.0")
    return BootstrapSpec(**{**base, **kw})


def _ray_start(script: str) -> list[str]:
    line = next(x for x in script.splitlines() if x.startswith("exec "))
    return shlex.split(line.replace('"$NODE_IP"', "IP").replace("${CUMULO_RAY_START_ARGS:-}", ""))


def test_the_script_installs_the_same_versions_and_joins_with_the_shape_and_labels():
    script = render(spec())
    assert script.startswith("#!/bin/bash\n")
    assert "CUMULO_VERSION=0.1.0" in script and f"RAY_VERSION={RAY_VERSION}" in script
    assert 'pip install --quiet "cumulo==$CUMULO_VERSION" "ray[default]==$RAY_VERSION"' in script
    argv = _ray_start(script)
    assert argv[:5] == ["exec", "$PY", "-m", "ray.scripts.scripts", "start"]
    assert "--address=10.0.0.5:6379" in argv and "--num-cpus=4" in argv and "--num-gpus=1" in argv
    assert f"--memory={16 * 2**30}" in argv and "--block" in argv and "--node-ip-address=IP" in argv
    labels = dict(kv.split("=", 1) for kv in next(a for a in argv if a.startswith("--labels="))[9:].split(","))
    assert labels == {NODE_ID_LABEL: "a1b2c3d4e5f6-0", "cumulo.io/generation": "0", "cumulo.io/instance-type": "g4dn.xlarge",
                      "cumulo.io/zone": "us-east-1a", "cumulo.io/market": "spot", "cumulo.io/provider": "aws"}
    assert '--resources={"accelerator_type:T4": 1}' in argv
    on_demand = render(spec(spot=False, gpus=0, accelerator=None, cpus=0.5))
    argv = _ray_start(on_demand)
    assert "cumulo.io/market=on-demand" in next(a for a in argv if a.startswith("--labels="))
    assert "--num-cpus=0.5" in argv and not any(a.startswith("--resources") for a in argv)


def test_the_script_is_valid_bash_and_the_labels_are_valid_for_ray():
    script = render(spec(instance_type="Standard_NC4as_T4_v3", zone="weird zone/1"))
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    label_utils = pytest.importorskip("ray._private.label_utils")
    flag = next(a for a in ray_start_args(spec(zone="weird zone/1")) if a.startswith("--labels="))
    parsed = label_utils.parse_node_labels_string(flag[len("--labels="):])  # raises on what Ray refuses
    assert parsed["cumulo.io/zone"] == "weird-zone-1"
    assert label_value("x" * 80) == "x" * 63


def test_skips_the_install_when_the_interpreter_has_exactly_those_versions(tmp_path):
    """Run the script's own check with a fake `ray start`: the install happens only on a mismatch."""
    fake = tmp_path / "py"
    fake.write_text('#!/bin/bash\nif [ "$1" = "-m" ] && [ "$2" = pip ]; then echo INSTALL; exit 0; fi\n'
                    f'if [ "$1" = "-m" ]; then echo START "$@"; exit 0; fi\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "CUMULO_PYTHON": str(fake), "CUMULO_NODE_IP": "10.1.2.3",
           "CUMULO_RAY_START_ARGS": "--extra=1"}
    ray = pytest.importorskip("ray")
    same = subprocess.run(["bash", "-c", render(spec(cumulo_version=cumulo_version(), ray_version=ray.__version__))],
                          env=env, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert "INSTALL" not in same.stdout and "START -m ray.scripts.scripts start --node-ip-address=10.1.2.3" in same.stdout
    assert same.stdout.rstrip().endswith("--extra=1")
    other = subprocess.run(["bash", "-c", render(spec(cumulo_version="0.0.1"))], env=env, capture_output=True, text=True)
    assert other.returncode == 0 and "INSTALL" in other.stdout


def test_refuses_what_cannot_join():
    with pytest.raises(InvalidSpec, match="join_address"):
        render(spec(join_address="http://10.0.0.5:8265"))
    with pytest.raises(InvalidSpec, match="node_id"):
        render(spec(node_id="bad id"))
