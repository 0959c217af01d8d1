"""The bootstrap every machine launched for a cluster runs first: a cloud-init style shell script.

`render(BootstrapSpec)` gives one text that goes out unchanged as EC2 UserData and as the script
the local-vm provider runs in its sandbox. It

1. installs this very cumulo version and ``ray[default]==RAY_VERSION`` with pip, unless the
   interpreter already has exactly those versions (a local-vm machine on the control plane's own
   host, or an image baked with them);
2. joins the Ray cluster at the cluster's GCS address with ``ray start --block``: the shape's
   CPUs, GPUs and memory, and labels naming the cumulo node id, instance type, zone, provider and
   market (spot / on-demand), which is how the control plane recognises the node once it has
   joined. ``--block`` keeps the script in the foreground for as long as the Ray node lives.

What differs between machines comes from the environment, never from the text:
``CUMULO_NODE_IP`` (default: the machine's first address, ``hostname -I``), ``CUMULO_PYTHON``
(default ``python3``) and ``CUMULO_RAY_START_ARGS`` (more ``ray start`` options: the local-vm
provider gives each node its own dashboard agent port and a small object store).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import metadata

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import GENERATION_LABEL, NODE_ID_LABEL

RAY_VERSION = "2.60.0"
#: the labels a bootstrapped Ray node carries (Ray reserves the ``ray.io/`` prefix)
LABEL_PREFIX = "cumulo.io/"
INSTANCE_TYPE_LABEL = LABEL_PREFIX + "instance-type"
ZONE_LABEL = LABEL_PREFIX + "zone"
MARKET_LABEL = LABEL_PREFIX + "market"  # spot | on-demand
PROVIDER_LABEL = LABEL_PREFIX + "provider"
# Ray 2.60's label value syntax (ray/_private/label_utils.py): Kubernetes label values
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


def cumulo_version() -> str:
    try:
        return metadata.version("cumulo")
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH without an install
        return "0.1.0"


@dataclass(frozen=True)
class BootstrapSpec:
    node_id: str
    cluster: str
    #: the Ray GCS address the node joins (HOST:PORT, what `ray start --address` takes)
    join_address: str
    provider: str
    instance_type: str
    zone: str  # the zone, or the region where the offering has none
    spot: bool
    cpus: float
    memory_bytes: int
    gpus: int = 0
    accelerator: str | None = None
    cumulo_version: str = ""
    ray_version: str = RAY_VERSION
    #: which machine of the node this is (a replacement gets the next number)
    generation: int = 0

    def labels(self) -> dict[str, str]:
        return {
            NODE_ID_LABEL: self.node_id,
            GENERATION_LABEL: str(self.generation),
            INSTANCE_TYPE_LABEL: self.instance_type,
            ZONE_LABEL: self.zone,
            MARKET_LABEL: "spot" if self.spot else "on-demand",
            PROVIDER_LABEL: self.provider,
        }


def label_value(text: str) -> str:
    """`text` as a Ray label value: characters Ray refuses become '-', at most 63 characters."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")
    return value


def _check(spec: BootstrapSpec) -> None:
    errors = []
    if not re.fullmatch(r"[A-Za-z0-9_.-]+:\d{1,5}", spec.join_address or ""):
        errors.append({"field": "join_address", "message": f"{spec.join_address!r} is not HOST:PORT"})
    if not _LABEL_VALUE.fullmatch(spec.node_id) or not spec.node_id:
        errors.append({"field": "node_id", "message": f"{spec.node_id!r} cannot be a Ray label value"})
    if spec.cpus <= 0 or spec.memory_bytes <= 0 or spec.gpus < 0:
        errors.append({"field": "shape", "message": "needs CPUs and memory"})
    if errors:
        raise InvalidSpec("cannot bootstrap: " + "; ".join(f"{e['field']} {e['message']}" for e in errors),
                          errors=errors)


def ray_start_args(spec: BootstrapSpec) -> list[str]:
    """`ray start` options for the shape (the node IP and the extra options come at run time)."""
    args = [
        f"--address={spec.join_address}",
        f"--num-cpus={int(spec.cpus) if float(spec.cpus).is_integer() else spec.cpus}",
        f"--num-gpus={spec.gpus}",
        f"--memory={spec.memory_bytes}",
        "--labels=" + ",".join(f"{k}={label_value(v)}" for k, v in spec.labels().items()),
    ]
    if spec.gpus and spec.accelerator:
        # the GPU type as Ray names it: what the Ray runtime reports as the node's gpu_type
        args.append('--resources={"accelerator_type:%s": 1}' % label_value(spec.accelerator))
    return [*args, "--disable-usage-stats", "--block"]


_TEMPLATE = """\
#!/bin/bash
# cumulo bootstrap (cloud-init user-data): join this machine to cluster {cluster} as node {node_id}
# ({provider} {instance_type} in {zone}, {market}). The same text on every provider; a machine's own
# settings come from the environment: CUMULO_NODE_IP, CUMULO_PYTHON, CUMULO_RAY_START_ARGS.
set -euo pipefail
export RAY_USAGE_STATS_ENABLED=0
CUMULO_VERSION={cumulo_version}
RAY_VERSION={ray_version}
PY="${{CUMULO_PYTHON:-python3}}"

# 1. the same cumulo and Ray as the control plane (skipped when the interpreter has exactly them)
if ! "$PY" - "$CUMULO_VERSION" "$RAY_VERSION" <<'EOF'
import importlib.util, sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = version("cumulo") == sys.argv[1] and version("ray") == sys.argv[2]
except PackageNotFoundError:
    ok = False
ok = ok and importlib.util.find_spec("aiohttp") is not None  # the [default] extra (dashboard agent)
sys.exit(0 if ok else 1)
EOF
then
  echo "cumulo bootstrap: installing cumulo==$CUMULO_VERSION ray[default]==$RAY_VERSION"
  "$PY" -m pip install --quiet "cumulo==$CUMULO_VERSION" "ray[default]==$RAY_VERSION"
fi

# 2. join the cluster; --block keeps this script running for as long as the Ray node lives
NODE_IP="${{CUMULO_NODE_IP:-$(hostname -I | awk '{{print $1}}')}}"
echo "cumulo bootstrap: node {node_id} joining {join_address} as $NODE_IP"
# shellcheck disable=SC2086 # CUMULO_RAY_START_ARGS is a list of options
exec "$PY" -m ray.scripts.scripts start --node-ip-address="$NODE_IP" {args} ${{CUMULO_RAY_START_ARGS:-}}
"""


def render(spec: BootstrapSpec) -> str:
    """The bootstrap script for one machine (see the module's docstring)."""
    _check(spec)
    return _TEMPLATE.format(
        cluster=label_value(spec.cluster), node_id=spec.node_id, provider=label_value(spec.provider),
        instance_type=label_value(spec.instance_type), zone=label_value(spec.zone), market="spot" if spec.spot else "on-demand",
        cumulo_version=shlex.quote(spec.cumulo_version or cumulo_version()), ray_version=shlex.quote(spec.ray_version),
        join_address=spec.join_address, args=" ".join(shlex.quote(a) for a in ray_start_args(spec)),
    )


__all__ = ["BootstrapSpec", "GENERATION_LABEL", "NODE_ID_LABEL", "RAY_VERSION", "cumulo_version", "label_value", "render"]
