"""The AWS provider's pure mappings, fed through botocore's own EC2 parser with EC2's wire format.

moto cannot play an EC2 spot interruption or a capacity / quota refusal, so these are checked here on
the responses EC2 itself sends (XML as documented and as seen from EC2), parsed by botocore exactly
as a live call would parse them; tests/ec2_faults.py plays them over HTTP for the end-to-end tests.
"""

from __future__ import annotations

from datetime import datetime

import botocore.session
import pytest
from botocore import exceptions as bx
from botocore.parsers import create_parser

from cumulo.core.errors import CapacityError, Conflict, CredentialsError, InvalidSpec, ProviderError, QuotaError
from cumulo.core.offerings import MachineState
from cumulo.providers.aws import ec2_client_token, is_spot_interruption, machine_from_instance, map_error, tag_filters

EC2 = botocore.session.get_session().get_service_model("ec2")


def ec2_error(code: str, message: str, operation: str = "RunInstances") -> bx.ClientError:
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error></Errors><RequestID>3f1e0f43-0000</RequestID></Response>")
    parsed = create_parser("ec2").parse({"body": body.encode(), "headers": {}, "status_code": 400},
                                        EC2.operation_model(operation).output_shape)
    return bx.ClientError(parsed, operation)


def instance(state: str, *, spot: bool, reason_code: str | None = None, reason_message: str | None = None,
             transition: str = "") -> dict:
    lifecycle = ("<instanceLifecycle>spot</instanceLifecycle>"
                 "<spotInstanceRequestId>sir-8x2k9d3m</spotInstanceRequestId>") if spot else ""
    reason = f"<stateReason><code>{reason_code}</code><message>{reason_message}</message></stateReason>" \
        if reason_code else ""
    codes = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet><item>
    <reservationId>r-1234567890abcdef0</reservationId><ownerId>123456789012</ownerId>
    <instancesSet><item>
      <instanceId>i-0598c7d356eba48d7</instanceId><imageId>ami-0abcdef1234567890</imageId>
      <instanceState><code>{codes[state]}</code><name>{state}</name></instanceState>
      <privateIpAddress>172.31.18.4</privateIpAddress>
      <reason>{transition}</reason>
      <amiLaunchIndex>0</amiLaunchIndex>
      <instanceType>g4dn.xlarge</instanceType>
      <launchTime>2024-05-01T09:00:00.000Z</launchTime>
      <placement><availabilityZone>us-east-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>
      {lifecycle}
      {reason}
      <tagSet>
        <item><key>cumulo:node-id</key><value>n-1</value></item>
        <item><key>cumulo:managed</key><value>true</value></item>
      </tagSet>
    </item></instancesSet>
  </item></reservationSet>
</DescribeInstancesResponse>"""
    parsed = create_parser("ec2").parse({"body": body.encode(), "headers": {}, "status_code": 200},
                                        EC2.operation_model("DescribeInstances").output_shape)
    return parsed["Reservations"][0]["Instances"][0]


SPOT_TERMINATION = ("Server.SpotInstanceTermination", "Server.SpotInstanceTermination: Spot instance termination")
USER = ("Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown")


def test_a_running_instance():
    m = machine_from_instance(instance("running", spot=False), "us-east-1")
    assert (m.id, m.provider, m.region, m.zone, m.instance_type, m.state, m.spot) == (
        "i-0598c7d356eba48d7", "aws", "us-east-1", "us-east-1a", "g4dn.xlarge", MachineState.RUNNING, False)
    assert m.tags == {"cumulo:node-id": "n-1", "cumulo:managed": "true"}
    assert isinstance(m.launched_at, datetime) and m.private_ip == "172.31.18.4" and m.public_ip is None


@pytest.mark.parametrize("state, spot, reason, expected", [
    ("pending", False, None, MachineState.PENDING),
    ("running", True, None, MachineState.RUNNING),
    ("shutting-down", False, USER, MachineState.TERMINATING),
    ("terminated", False, USER, MachineState.TERMINATED),
    ("terminated", True, USER, MachineState.TERMINATED),  # a spot instance someone terminated
    ("stopping", False, USER, MachineState.TERMINATING),
    ("stopped", False, USER, MachineState.TERMINATED),
    # EC2 takes a spot instance back: terminate, stop or hibernate behaviour
    ("terminated", True, SPOT_TERMINATION, MachineState.PREEMPTED),
    ("shutting-down", True, SPOT_TERMINATION, MachineState.PREEMPTED),
    ("stopped", True, ("Server.SpotInstanceShutdown", "Server.SpotInstanceShutdown: Spot instance shutdown"),
     MachineState.PREEMPTED),
    ("stopped", True, ("Server.SpotInstanceHibernate", "Server.SpotInstanceHibernate: Spot instance hibernate"),
     MachineState.PREEMPTED),
    ("terminated", True, ("Server.InsufficientInstanceCapacity",
                          "Server.InsufficientInstanceCapacity: Insufficient capacity to satisfy instance request"),
     MachineState.PREEMPTED),
    # the same reason on an on-demand instance is not a preemption
    ("terminated", False, SPOT_TERMINATION, MachineState.TERMINATED),
])
def test_states(state, spot, reason, expected):
    raw = instance(state, spot=spot, reason_code=reason and reason[0], reason_message=reason and reason[1],
                   transition="Service initiated (2024-05-01 10:00:00 GMT)" if reason and reason[0].startswith("Server")
                   else "User initiated (2024-05-01 10:00:00 GMT)" if reason else "")
    m = machine_from_instance(raw, "us-east-1")
    assert m.state == expected and m.spot == spot
    assert is_spot_interruption(raw) == (expected == MachineState.PREEMPTED)
    if reason:
        assert reason[1] in m.state_reason
    if state in ("stopping", "stopped") and expected != MachineState.PREEMPTED:
        assert "cumulo never stops machines" in m.state_reason


def test_a_preempted_machine_says_why():
    m = machine_from_instance(instance("terminated", spot=True, reason_code=SPOT_TERMINATION[0],
                                       reason_message=SPOT_TERMINATION[1]), "us-east-1")
    assert m.state == MachineState.PREEMPTED and m.state_reason == SPOT_TERMINATION[1]


def test_an_unknown_state_is_pending_with_a_reason():
    raw = instance("running", spot=False)
    raw["State"] = {"Code": 99, "Name": "warming-up"}
    m = machine_from_instance(raw, "us-east-1")
    assert m.state == MachineState.PENDING and "warming-up" in m.state_reason


CTX = {"action": "launch instances", "region": "us-east-1", "zone": "us-east-1a", "instance_type": "g4dn.xlarge"}


@pytest.mark.parametrize("code, message, cls, scope", [
    ("InsufficientInstanceCapacity", "We currently do not have sufficient g4dn.xlarge capacity in the Availability "
     "Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity.",
     CapacityError, "zone"),
    ("InsufficientCapacity", "There is insufficient capacity to satisfy the request.", CapacityError, "zone"),
    ("SpotMaxPriceTooLow", "Your Spot request price of 0.1 is lower than the minimum required Spot request "
     "fulfillment price of 0.2104.", CapacityError, "zone"),
    ("Unsupported", "Your requested instance type (g4dn.xlarge) is not supported in your requested Availability "
     "Zone (us-east-1e).", CapacityError, "zone"),
    ("InstanceLimitExceeded", "Your quota allows for 0 more running instance(s). You requested at least 1.",
     QuotaError, "region"),
    ("VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the "
     "instance bucket that the specified instance type belongs to.", QuotaError, "region"),
    ("MaxSpotInstanceCountExceeded", "Max spot instance count exceeded", QuotaError, "region"),
    ("AuthFailure", "AWS was not able to validate the provided access credentials", CredentialsError, "provider"),
    ("UnrecognizedClientException", "The security token included in the request is invalid.",
     CredentialsError, "provider"),
    ("UnauthorizedOperation", "You are not authorized to perform this operation.", CredentialsError, "provider"),
    ("OptInRequired", "You are not subscribed to this service.", ProviderError, "region"),
    ("InternalError", "An internal error has occurred", ProviderError, "region"),
    ("RequestLimitExceeded", "Request limit exceeded.", ProviderError, None),
    ("SomethingNew", "A code nobody has seen yet", ProviderError, None),
])
def test_errors_map_to_what_they_rule_out(code, message, cls, scope):
    err = map_error(ec2_error(code, message), **CTX)
    assert type(err) is cls and err.scope == scope
    assert code in str(err) and message in str(err)


def test_credentials_errors_say_how_to_configure_credentials():
    for err in (map_error(ec2_error("AuthFailure", "AWS was not able to validate the provided access credentials"),
                          **CTX),
                map_error(bx.NoCredentialsError(), **CTX),
                map_error(bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), **CTX)):
        assert isinstance(err, CredentialsError) and err.status == 401
        assert "aws configure" in str(err) and "AWS_ACCESS_KEY_ID" in str(err) and "AWS_PROFILE" in str(err)


def test_quota_errors_say_what_to_do():
    err = map_error(ec2_error("VcpuLimitExceeded", "You have requested more vCPU capacity"), **CTX)
    assert "Service Quotas" in str(err)


@pytest.mark.parametrize("code, message", [
    ("InvalidParameterValue", "Invalid value 'g4dn.medium' for InstanceType."),
    ("InvalidInstanceType", "The following supplied instance types do not exist: [g4dn.medium]"),
])
def test_an_unknown_instance_type_is_invalid_input(code, message):
    err = map_error(ec2_error(code, message), **{**CTX, "instance_type": "g4dn.medium"})
    assert isinstance(err, InvalidSpec) and not isinstance(err, ProviderError)
    assert "unknown instance type 'g4dn.medium' for aws in us-east-1" in str(err)
    assert err.errors[0]["field"] == "instance_type"


def test_other_bad_input():
    assert isinstance(map_error(ec2_error("InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist"), **CTX),
                      InvalidSpec)
    assert "CUMULO_AWS_AMI" in str(map_error(ec2_error("InvalidAMIID.Malformed", "Invalid id"), **CTX))
    zone = map_error(ec2_error("InvalidParameterValue", "Invalid Availability Zone (us-east-1z)"), **CTX)
    assert type(zone) is ProviderError and zone.scope == "zone"
    assert isinstance(map_error(ec2_error("IdempotentParameterMismatch", "Arguments on this idempotent request are "
                                          "inconsistent with arguments used in previous request(s)."), **CTX), Conflict)
    assert isinstance(map_error(ec2_error("MissingParameter", "The request must contain the parameter ImageId"),
                                **CTX), InvalidSpec)


def test_network_errors_rule_out_the_region():
    err = map_error(bx.EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com"), **CTX)
    assert type(err) is ProviderError and err.scope == "region"
    assert isinstance(map_error(bx.NoRegionError(), action="launch instances"), InvalidSpec)


def test_client_tokens_fit_ec2():
    assert ec2_client_token("node-7") == "node-7"
    long = "x" * 100
    assert len(ec2_client_token(long)) == 64 and ec2_client_token(long) == ec2_client_token(long)
    assert ec2_client_token("nœud") != "nœud" and ec2_client_token("nœud").isascii()


def test_tag_filters():
    assert tag_filters(None) == []
    assert tag_filters({"cumulo:pool": "p"}) == [{"Name": "tag:cumulo:pool", "Values": ["p"]}]
