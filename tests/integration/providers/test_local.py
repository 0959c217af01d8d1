"""The local provider: this machine, one machine, $0, its claim kept in a file."""

from __future__ import annotations

import dataclasses

import psutil
import pytest

from cumulo.core.errors import CapacityError, InvalidSpec
from cumulo.core.offerings import MachineState
from cumulo.providers import LAUNCH_TOKEN_TAG, LocalProvider, Provider, local_offering

TAGS = {"cumulo:node-id": "n-1", "cumulo:pool": "default", "cumulo:managed": "true"}


@pytest.fixture
def provider(tmp_path):
    return LocalProvider(tmp_path / "providers" / "local.json")


def launch(provider, count=1, token="t-1", offering=None, tags=TAGS):
    return provider.launch(offering or provider.offering, count, spot=False, tags=tags, user_data=None,
                           client_token=token)


def test_offering_is_this_machine_at_no_cost():
    o = local_offering()
    assert (o.provider, o.region, o.instance_type, o.price) == ("local", "local", "local", 0.0)
    assert o.vcpus == psutil.cpu_count() and o.memory_gib > 0 and o.spot_price is None


def test_launch_describe_terminate(provider):
    assert isinstance(provider, Provider)
    (m,) = launch(provider)
    assert m.state == MachineState.RUNNING and m.provider == "local" and m.tags == {**TAGS, LAUNCH_TOKEN_TAG: "t-1"}
    assert launch(provider) == [m]  # same token: the same machine
    assert provider.describe(tags={"cumulo:pool": "default"}) == [m]
    assert provider.describe(tags={"cumulo:pool": "other"}) == []
    assert provider.describe(region="us-east-1") == []
    provider.terminate([m.id], region="local")
    provider.terminate([m.id], region="local")  # idempotent
    provider.terminate(["local-unknown"], region="local")
    (gone,) = provider.describe()
    assert gone.id == m.id and gone.state == MachineState.TERMINATED
    (again,) = launch(provider, token="t-2")  # free again
    assert again.id != m.id and again.state == MachineState.RUNNING


def test_the_claim_survives_a_restart(provider):
    (m,) = launch(provider)
    assert LocalProvider(provider.state_path).describe(tags=TAGS) == [m]


def test_more_than_this_machine_is_a_capacity_error(provider):
    with pytest.raises(CapacityError, match="one machine; 2 machines"):
        launch(provider, count=2)
    bigger = dataclasses.replace(provider.offering, vcpus=provider.offering.vcpus * 2)
    with pytest.raises(CapacityError, match="this machine has"):
        launch(provider, offering=bigger)
    launch(provider)
    with pytest.raises(CapacityError, match="already in use") as caught:
        launch(provider, token="t-2")
    assert caught.value.scope == "provider"


def test_bad_input(provider):
    with pytest.raises(InvalidSpec, match="count"):
        launch(provider, count=0)
    with pytest.raises(InvalidSpec, match="cannot launch a 'aws' offering"):
        launch(provider, offering=dataclasses.replace(provider.offering, provider="aws"))
    with pytest.raises(InvalidSpec, match="client_token"):
        launch(provider, token="")
    with pytest.raises(InvalidSpec, match="no spot market"):
        provider.launch(provider.offering, 1, spot=True, tags=TAGS, user_data=None, client_token="t-1")
    with pytest.raises(InvalidSpec, match="set by the provider"):
        launch(provider, tags={LAUNCH_TOKEN_TAG: "x"})
    assert provider.describe() == []


def test_the_catalog_offers_this_machine_as_the_provider_sees_it(tmp_path, monkeypatch):
    """Issue 9: the catalog rounded memory to 0.1 GiB and the provider to 0.01 GiB, so on a
    23.586 GiB machine the catalog offered 23.6 GiB, more than the provider's 23.59, and a launch of
    the catalog's own local offering failed its capacity check. There is one definition now."""
    from cumulo.catalog import load_catalog

    total = int(23.586 * 2**30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: _Mem(total))
    (offered,) = load_catalog(["local"])
    provider = LocalProvider(tmp_path / "providers" / "local.json")
    (m,) = launch(provider, offering=offered)  # was: CapacityError "this machine has ... 23.59 GiB"
    assert m.state == MachineState.RUNNING
    assert offered == provider.offering == local_offering()
    assert offered.memory_gib == 23.58  # rounded down: never more than the machine has


class _Mem:
    def __init__(self, total: int) -> None:
        self.total = total
