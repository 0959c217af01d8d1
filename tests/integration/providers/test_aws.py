"""The AWS provider end to end against moto's server (real HTTP, real boto3, no patching of cumulo)."""

from __future__ import annotations

import base64
import dataclasses

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError

from cumulo.core.errors import CapacityError, CredentialsError, InvalidSpec, ProviderError, QuotaError
from cumulo.core.offerings import MachineState
from cumulo.providers.aws import AWSProvider
from cumulo.providers.base import LAUNCH_TOKEN_TAG, Provider

TAGS = {"cumulo:node-id": "n-1", "cumulo:pool": "p-train", "cumulo:managed": "true"}


def launch(provider, offering, count=1, *, spot=False, tags=TAGS, user_data=None, token="tok-1"):
    return provider.launch(offering, count, spot=spot, tags=tags, user_data=user_data, client_token=token)


def raw(instance_id: str, region: str = "us-east-1") -> dict:
    """EC2's own view of an instance, through a plain boto3 client (not the provider)."""
    ec2 = boto3.client("ec2", region_name=region)
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def test_is_a_provider(aws_env):
    assert isinstance(AWSProvider(), Provider)


def test_launch_four_on_demand_tagged_and_found_by_tags(aws_env, g4dn):
    provider = AWSProvider()
    machines = launch(provider, g4dn, 4, user_data="#!/bin/bash\necho bootstrap cumulo\n")
    assert len(machines) == 4 and len({m.id for m in machines}) == 4
    for m in machines:
        assert (m.provider, m.region, m.zone, m.instance_type, m.spot) == ("aws", "us-east-1", "us-east-1a",
                                                                          "g4dn.xlarge", False)
        assert m.tags == {**TAGS, LAUNCH_TOKEN_TAG: "tok-1"}
        assert m.state in (MachineState.PENDING, MachineState.RUNNING)
        assert m.launched_at is not None and m.private_ip

    found = provider.describe(tags={"cumulo:pool": "p-train", "cumulo:managed": "true"})
    assert sorted(m.id for m in found) == sorted(m.id for m in machines)
    assert {m.state for m in found} == {MachineState.RUNNING}
    assert provider.describe(tags={"cumulo:pool": "someone-else"}) == []

    ec2 = boto3.client("ec2", region_name="us-east-1")
    data = ec2.describe_instance_attribute(InstanceId=machines[0].id, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(data).decode() == "#!/bin/bash\necho bootstrap cumulo\n"
    # the default image: an Amazon-published AMI that exists in the region
    image = raw(machines[0].id)["ImageId"]
    assert ec2.describe_images(ImageIds=[image])["Images"][0]["OwnerId"]


def test_same_client_token_returns_the_same_machines(aws_env, g4dn):
    provider = AWSProvider()
    first = launch(provider, g4dn, 4, token="node-batch-7")
    again = launch(provider, g4dn, 4, token="node-batch-7")
    assert [m.id for m in again] == [m.id for m in first]
    # a new provider object (as after a control plane restart) finds them too
    assert [m.id for m in launch(AWSProvider(), g4dn, 4, token="node-batch-7")] == [m.id for m in first]
    assert len(provider.describe(tags={"cumulo:pool": "p-train"})) == 4
    other = launch(provider, g4dn, 4, token="node-batch-8")
    assert not {m.id for m in other} & {m.id for m in first}
    assert len(provider.describe(tags={"cumulo:pool": "p-train"})) == 8


def test_spot_launch(aws_env, g4dn):
    provider = AWSProvider()
    machines = launch(provider, g4dn, 2, spot=True)
    assert [m.spot for m in machines] == [True, True]
    assert raw(machines[0].id)["InstanceLifecycle"] == "spot"
    assert all(m.spot for m in provider.describe(tags=TAGS))


def test_terminate_is_idempotent_and_describe_shows_terminated(aws_env, g4dn):
    provider = AWSProvider()
    machines = launch(provider, g4dn, 3)
    gone, kept = [machines[0].id, machines[1].id], machines[2].id
    provider.terminate(gone, region="us-east-1")
    provider.terminate(gone, region="us-east-1")  # again: no error
    provider.terminate([gone[0], "i-0123456789abcdef0"], region="us-east-1")  # with an unknown id: no error
    states = {m.id: m.state for m in provider.describe(region="us-east-1", tags=TAGS)}
    assert states == {gone[0]: MachineState.TERMINATED, gone[1]: MachineState.TERMINATED,
                      kept: MachineState.RUNNING}
    provider.terminate([], region="us-east-1")


def test_spot_terminated_by_the_user_is_not_a_preemption(aws_env, g4dn):
    """moto records every termination as Client.UserInitiatedShutdown: a spot instance the user
    terminated is not a preemption (EC2's own interruption is played by the fault proxy below)."""
    provider = AWSProvider()
    machine = launch(provider, g4dn, 1, spot=True)[0]
    provider.terminate([machine.id], region="us-east-1")
    assert raw(machine.id)["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    (seen,) = provider.describe(tags=TAGS)
    assert seen.state == MachineState.TERMINATED and seen.spot
    assert "User initiated" in seen.state_reason


def test_a_lost_launch_answer_is_rolled_back(aws_env, g4dn):
    """EC2 starts the instances but the answer never arrives: the launch raises and nothing is left running."""
    session = boto3.Session()

    def drop_answer(**_):
        raise ConnectionClosedError(endpoint_url=aws_env.url)

    session.events.register("after-call.ec2.RunInstances", drop_answer)
    provider = AWSProvider(session)
    with pytest.raises(ProviderError) as caught:
        launch(provider, g4dn, 4, token="lost-1")
    assert "terminated the 4 instance(s)" in str(caught.value)
    seen = AWSProvider().describe(tags=TAGS)
    assert len(seen) == 4 and {m.state for m in seen} == {MachineState.TERMINATED}


def test_a_launch_that_starts_fewer_than_asked_is_rolled_back(aws_env, g4dn):
    """EC2 answers with fewer instances than asked (as it may with MinCount below MaxCount): all or nothing."""
    session = boto3.Session()

    def keep_two(parsed, **_):
        parsed["Instances"] = parsed["Instances"][:2]

    session.events.register("after-call.ec2.RunInstances", keep_two)
    with pytest.raises(ProviderError) as caught:
        launch(AWSProvider(session), g4dn, 4, token="short-1")
    assert caught.value.scope == "zone" and "started 2 of 4" in str(caught.value)
    seen = AWSProvider().describe(tags=TAGS)
    assert len(seen) == 4 and {m.state for m in seen} == {MachineState.TERMINATED}


def test_no_credentials_says_how_to_configure_them(aws_env, g4dn, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError) as caught:
        launch(AWSProvider(), g4dn, 1)
    message = str(caught.value)
    assert "aws configure" in message and "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message
    assert caught.value.scope == "provider"


def test_wrong_credentials_are_a_credentials_error(aws_env, g4dn):
    aws_env.enforce_auth(True)  # moto now checks keys against its IAM, where "testing" does not exist
    try:
        with pytest.raises(CredentialsError) as caught:
            launch(AWSProvider(), g4dn, 1)
    finally:
        aws_env.enforce_auth(False)
    assert "rejected" in str(caught.value) and "aws configure" in str(caught.value)
    assert AWSProvider().describe() == []


def test_unknown_instance_type_is_a_clear_error(aws_env, g4dn):
    provider = AWSProvider()
    with pytest.raises(InvalidSpec) as caught:
        launch(provider, dataclasses.replace(g4dn, instance_type="g4dn.medium"), 4)
    assert "unknown instance type 'g4dn.medium' for aws in us-east-1" in str(caught.value)
    assert caught.value.errors[0]["field"] == "instance_type"
    assert provider.describe() == []


@pytest.mark.parametrize("count", [0, -1])
def test_count_must_be_positive(aws_env, g4dn, count):
    with pytest.raises(InvalidSpec, match="count must be a positive whole number"):
        launch(AWSProvider(), g4dn, count)


def test_unknown_zone_rules_out_the_zone(aws_env, g4dn):
    with pytest.raises(ProviderError) as caught:
        launch(AWSProvider(), dataclasses.replace(g4dn, zone="us-east-1z"), 1)
    assert caught.value.scope == "zone" and "us-east-1z" in str(caught.value)


def test_region_comes_from_the_offering(aws_env, g4dn):
    provider = AWSProvider()
    east = launch(provider, g4dn, 1, token="east")[0]
    west = launch(provider, dataclasses.replace(g4dn, region="eu-west-1", zone="eu-west-1b"), 1, token="west")[0]
    assert (west.region, west.zone) == ("eu-west-1", "eu-west-1b")
    assert [m.id for m in provider.describe(region="eu-west-1")] == [west.id]
    assert [m.id for m in provider.describe(region="us-east-1")] == [east.id]
    assert sorted(m.id for m in provider.describe()) == sorted([east.id, west.id])  # every region it used
    assert [m.id for m in AWSProvider(regions=["eu-west-1"]).describe()] == [west.id]
    provider.terminate([west.id], region="eu-west-1")
    assert provider.describe(region="eu-west-1")[0].state == MachineState.TERMINATED


def test_ami_override_from_the_environment(aws_env, g4dn, monkeypatch):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["ubuntu/*"]}])["Images"][0]
    monkeypatch.setenv("CUMULO_AWS_AMI", image["ImageId"])
    machine = launch(AWSProvider(), g4dn, 1)[0]
    assert raw(machine.id)["ImageId"] == image["ImageId"]

    monkeypatch.setenv("CUMULO_AWS_AMI", "ami-00000000000000000")
    with pytest.raises(InvalidSpec, match="CUMULO_AWS_AMI"):
        launch(AWSProvider(), g4dn, 1, token="bad-ami")


def test_service_specific_endpoint_variables_are_enough(aws_env, g4dn, monkeypatch):
    """boto3's AWS_ENDPOINT_URL_<SERVICE> works as well: no code path of cumulo's knows about emulators."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", aws_env.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", aws_env.url)
    machine = launch(AWSProvider(), g4dn, 1)[0]
    assert [m.id for m in AWSProvider().describe(tags=TAGS)] == [machine.id]


# -- what moto cannot produce, through the fault-injecting proxy (tests/ec2_faults.py) ----------

def test_no_capacity_in_a_zone_is_a_capacity_error_for_that_zone(ec2_faults, g4dn):
    ec2_faults.fail("InsufficientInstanceCapacity", "We currently do not have sufficient g4dn.xlarge capacity "
                    "in the Availability Zone you requested (us-east-1a).", zone="us-east-1a")
    provider = AWSProvider()
    with pytest.raises(CapacityError) as err:
        launch(provider, g4dn, 2)
    assert err.value.scope == "zone"
    assert "no EC2 capacity for g4dn.xlarge in us-east-1a" in str(err.value)
    assert provider.describe(tags=TAGS) == []  # nothing started
    # the next zone of the region answers normally
    (machine,) = launch(provider, dataclasses.replace(g4dn, zone="us-east-1b"), 1, token="tok-2")
    assert machine.zone == "us-east-1b"


def test_an_account_limit_is_a_quota_error_for_the_region(ec2_faults, g4dn):
    ec2_faults.fail("VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit "
                    "of 0 allows for the instance bucket that the specified instance type belongs to.",
                    region="us-east-1")
    with pytest.raises(QuotaError) as err:
        launch(AWSProvider(), g4dn, 1)
    assert err.value.scope == "region"
    assert "Service Quotas" in str(err.value)


def test_a_spot_instance_ec2_takes_back_is_preempted(ec2_faults, g4dn):
    provider = AWSProvider()
    machine = launch(provider, g4dn, 1, spot=True)[0]
    boto3.client("ec2", region_name="us-east-1").terminate_instances(InstanceIds=[machine.id])
    ec2_faults.interrupt_spot(machine.id)
    assert raw(machine.id)["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    (seen,) = provider.describe(tags=TAGS)
    assert seen.state == MachineState.PREEMPTED and seen.spot
