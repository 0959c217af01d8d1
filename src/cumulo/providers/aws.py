"""AWS EC2 through boto3: on-demand and one-time spot instances, tagged, idempotent, all or nothing.

Configuration is boto3's own and nothing else: the credential chain (environment, AWS_PROFILE,
shared files, SSO, instance roles), retries (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS) and endpoints
(AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_SSM), so pointing cumulo at an emulator
such as moto's server is an environment variable, not a code path. The region comes from the
offering; clients are cached per region.

Idempotency is two-fold: RunInstances gets the launch's ``ClientToken`` (EC2 itself then never
starts a second reservation for the same token) and every instance carries the token as the tag
``cumulo:launch-token``, which ``launch`` looks up first. The tag also finds instances whose
RunInstances answer was lost, so a failed launch can terminate them (nothing is left
half-provisioned), and it works with emulators that ignore ClientToken.

The image: the ``ami`` argument, else ``CUMULO_AWS_AMI``, else the newest public image for the
instance type's architecture: the Deep Learning Base AMI (NVIDIA driver) for GPU types, Amazon Linux
2023 otherwise, read from SSM public parameters, with DescribeImages (owner amazon) as a fallback.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from typing import Any

import boto3
from botocore import exceptions as bx
from botocore.client import BaseClient

from cumulo.core.errors import (
    CapacityError, Conflict, CredentialsError, CumuloError, InvalidSpec, ProviderError, QuotaError,
)
from cumulo.core.offerings import Machine, MachineState, Offering
from cumulo.providers.base import LAUNCH_TOKEN_TAG, check_launch_args

AMI_ENV = "CUMULO_AWS_AMI"
REGIONS_ENV = "CUMULO_AWS_REGIONS"

CREDENTIALS_HELP = (
    "configure AWS credentials the standard way: `aws configure` (or `aws sso login`), the environment "
    "variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary ones), "
    "AWS_PROFILE for a named profile, or an instance role; for an emulator, set AWS_ENDPOINT_URL too"
)

# EC2 error codes -> what they rule out for placement's failover.
CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "SpotMaxPriceTooLow", "InsufficientFreeAddressesInSubnet",
    "Unsupported",  # "Your requested instance type (...) is not supported in your requested Availability Zone"
})
QUOTA_CODES = frozenset({
    "InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "SpotMaxInstanceCountExceeded",
})
AUTH_CODES = frozenset({
    "AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException",
    "RequestExpired", "InvalidAccessKeyId", "InvalidToken",
})
PERMISSION_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
SERVER_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})
BAD_TYPE_CODES = frozenset({"InvalidInstanceType", "InvalidInstanceType.NotFound"})
CREDENTIAL_EXCEPTIONS = (
    bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError, bx.UnknownCredentialError,
    bx.SSOError, bx.SSOTokenLoadError, bx.UnauthorizedSSOTokenError, bx.TokenRetrievalError,
)
NETWORK_EXCEPTIONS = (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError)

# EC2 instance state names -> MachineState (spot interruptions are recognised separately).
EC2_STATES = {
    "pending": MachineState.PENDING,
    "running": MachineState.RUNNING,
    "shutting-down": MachineState.TERMINATING,
    "stopping": MachineState.TERMINATING,
    "terminated": MachineState.TERMINATED,
    "stopped": MachineState.TERMINATED,  # cumulo never stops a machine: a stopped one does no work for it
}
# StateReason codes EC2 sets when it takes a spot instance back (terminate, stop or hibernate).
SPOT_INTERRUPTION_CODES = frozenset({
    "Server.SpotInstanceTermination", "Server.SpotInstanceShutdown", "Server.SpotInstanceHibernate",
})
ENDED = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

GPU_AMI_PARAMETERS = {
    "x86_64": ["/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"],
    "arm64": ["/aws/service/deeplearning/ami/arm64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"],
}
CPU_AMI_PARAMETERS = {
    "x86_64": ["/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"],
    "arm64": ["/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"],
}
AMI_NAME_PATTERNS = ["al2023-ami-2023*"]


# -- pure mappings ------------------------------------------------------------------------------

def _error_code(err: bx.ClientError) -> tuple[str, str]:
    e = err.response.get("Error", {})
    return str(e.get("Code", "")), str(e.get("Message", "")) or str(err)


def map_error(err: Exception, *, action: str, region: str | None = None, zone: str | None = None,
              instance_type: str | None = None) -> CumuloError:
    """Turn a botocore error into the shared error that says what it rules out and what to do."""
    where = zone or region or "AWS"
    if isinstance(err, CREDENTIAL_EXCEPTIONS):
        return CredentialsError(f"AWS credentials are missing or unusable ({err}); {CREDENTIALS_HELP}",
                                scope="provider")
    if isinstance(err, bx.NoRegionError):
        return InvalidSpec("no AWS region given: the offering must name one (or set AWS_DEFAULT_REGION)")
    if isinstance(err, NETWORK_EXCEPTIONS):
        return ProviderError(f"could not reach EC2 in {region} to {action}: {err}", scope="region")
    if not isinstance(err, bx.ClientError):
        return ProviderError(f"EC2 {action} failed in {where}: {err}")
    code, message = _error_code(err)
    detail = f"{code}: {message}"
    if code in CAPACITY_CODES:
        return CapacityError(f"no EC2 capacity for {instance_type or 'that instance type'} in {where} ({detail})",
                             scope="zone")
    if code in QUOTA_CODES:
        return QuotaError(f"an EC2 account limit in {region} stops this {action} ({detail}); ask AWS for a "
                          "higher quota in the Service Quotas console or use another region", scope="region")
    if code in AUTH_CODES:
        return CredentialsError(f"AWS rejected the credentials ({detail}); {CREDENTIALS_HELP}", scope="provider")
    if code in PERMISSION_CODES:
        return CredentialsError(f"the AWS credentials lack permission to {action} ({detail}); grant the IAM "
                                "principal ec2:RunInstances, ec2:TerminateInstances, ec2:DescribeInstances, "
                                "ec2:DescribeInstanceTypes, ec2:DescribeImages, ec2:CreateTags and "
                                "ssm:GetParameter", scope="provider")
    if code == "OptInRequired":
        return ProviderError(f"the AWS account is not enabled for {region} ({detail}); enable the region or "
                             "use another", scope="region")
    about_type = "instancetype" in message.lower().replace(" ", "")
    if code in BAD_TYPE_CODES or (code == "InvalidParameterValue" and about_type):
        return InvalidSpec(f"unknown instance type {instance_type!r} for aws in {region} ({detail})",
                           errors=[{"field": "instance_type", "message": message}])
    if code == "InvalidParameterValue" and "availability zone" in message.lower():
        return ProviderError(f"EC2 does not offer zone {zone!r} in {region} ({detail})", scope="zone")
    if code.startswith("InvalidAMIID"):
        return InvalidSpec(f"the image for {region} is not usable ({detail}); AMIs are per region: set "
                           f"{AMI_ENV} to an AMI id that exists in {region}",
                           errors=[{"field": "ami", "message": message}])
    if code == "IdempotentParameterMismatch":
        return Conflict(f"the client token was already used for a different launch ({detail}); "
                        "a new launch needs a new token")
    if code in THROTTLE_CODES:
        return ProviderError(f"EC2 is throttling requests in {region} ({detail}); try again shortly")
    if code in SERVER_CODES:
        return ProviderError(f"EC2 failed in {region} ({detail})", scope="region")
    if code.startswith("Invalid") or code in {"MissingParameter", "UnknownParameter", "ValidationError"}:
        return InvalidSpec(f"EC2 refused the {action} ({detail})")
    return ProviderError(f"EC2 {action} failed in {where} ({detail})")


def _tags(instance: dict) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in instance.get("Tags") or []}


def is_spot_interruption(instance: dict) -> bool:
    """True when EC2 took this spot instance back (as opposed to someone terminating or stopping it)."""
    if instance.get("InstanceLifecycle") != "spot":
        return False
    if (instance.get("State") or {}).get("Name") not in ENDED:
        return False
    code = (instance.get("StateReason") or {}).get("Code", "")
    return code in SPOT_INTERRUPTION_CODES or code.startswith("Server.Spot") or \
        code == "Server.InsufficientInstanceCapacity"


def machine_state(instance: dict) -> tuple[str, str]:
    """(MachineState, reason) for one DescribeInstances/RunInstances instance."""
    name = (instance.get("State") or {}).get("Name", "")
    reason = instance.get("StateReason") or {}
    text = reason.get("Message") or reason.get("Code") or instance.get("StateTransitionReason") or ""
    if is_spot_interruption(instance):
        return MachineState.PREEMPTED, text or "spot instance interrupted by EC2"
    state = EC2_STATES.get(name)
    if state is None:
        return MachineState.PENDING, f"unknown EC2 state {name!r}"
    if name in ("stopping", "stopped"):
        text = f"{name} (cumulo never stops machines; terminate it to stop paying for its volumes): {text}".rstrip(": ")
    return state, text


def machine_from_instance(instance: dict, region: str) -> Machine:
    state, reason = machine_state(instance)
    return Machine(
        id=instance["InstanceId"], provider="aws", region=region,
        zone=(instance.get("Placement") or {}).get("AvailabilityZone") or None,
        instance_type=instance.get("InstanceType", ""), state=state,
        spot=instance.get("InstanceLifecycle") == "spot", tags=_tags(instance),
        launched_at=instance.get("LaunchTime"), private_ip=instance.get("PrivateIpAddress"),
        public_ip=instance.get("PublicIpAddress"), state_reason=reason,
    )


def ec2_client_token(client_token: str) -> str:
    """EC2 takes at most 64 ASCII characters; longer or non-ASCII tokens are hashed (stably)."""
    if len(client_token) <= 64 and client_token.isascii():
        return client_token
    return hashlib.sha256(client_token.encode()).hexdigest()


def tag_filters(tags: dict[str, str] | None) -> list[dict]:
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in (tags or {}).items()]


# -- the provider -------------------------------------------------------------------------------

class AWSProvider:
    name = "aws"

    def __init__(self, session: boto3.Session | None = None, *, ami: str | None = None,
                 regions: Iterable[str] | None = None) -> None:
        """`session`: a boto3 Session (default: a new one, i.e. the standard credential chain).
        `ami`: an image id used in every region (default: CUMULO_AWS_AMI, else resolved per region).
        `regions`: where `describe()` without a region looks (default: CUMULO_AWS_REGIONS, comma
        separated, else the session's default region plus every region this provider has used)."""
        self.session = session or boto3.Session()
        self.ami = ami or os.environ.get(AMI_ENV) or None
        env_regions = [r.strip() for r in os.environ.get(REGIONS_ENV, "").split(",") if r.strip()]
        self._regions = list(regions) if regions is not None else env_regions
        self._clients: dict[tuple[str, str], BaseClient] = {}
        self._types: dict[tuple[str, str], dict] = {}
        self._amis: dict[tuple[str, str, bool], str] = {}
        self._used: set[str] = set()
        self._lock = threading.Lock()

    # -- clients and lookups ----------------------------------------------------------------------
    def _client(self, service: str, region: str) -> BaseClient:
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                try:
                    self._clients[key] = self.session.client(service, region_name=region)
                except Exception as err:  # botocore raises its own errors here (no region, bad config)
                    raise map_error(err, action="create an EC2 client", region=region) from err
            return self._clients[key]

    def ec2(self, region: str) -> BaseClient:
        return self._client("ec2", region)

    def regions(self) -> list[str]:
        if self._regions:
            return list(self._regions)
        found = set(self._used)
        if self.session.region_name:
            found.add(self.session.region_name)
        return sorted(found)

    def instance_type_info(self, region: str, instance_type: str) -> dict:
        """DescribeInstanceTypes for one type (cached): validates the type before launching."""
        key = (region, instance_type)
        if key not in self._types:
            try:
                found = self.ec2(region).describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
            except Exception as err:
                raise map_error(err, action="look up the instance type", region=region,
                                instance_type=instance_type) from err
            if not found:
                raise InvalidSpec(f"unknown instance type {instance_type!r} for aws in {region}",
                                  errors=[{"field": "instance_type", "message": "not offered in this region"}])
            self._types[key] = found[0]
        return self._types[key]

    def resolve_ami(self, region: str, architecture: str, gpu: bool) -> str:
        if self.ami:
            return self.ami
        key = (region, architecture, gpu)
        if key in self._amis:
            return self._amis[key]
        ssm = self._client("ssm", region)
        names = (GPU_AMI_PARAMETERS if gpu else {}).get(architecture, []) + CPU_AMI_PARAMETERS.get(architecture, [])
        for name in names:
            try:
                self._amis[key] = ssm.get_parameter(Name=name)["Parameter"]["Value"]
                return self._amis[key]
            except bx.ClientError as err:
                code, _ = _error_code(err)
                if code in AUTH_CODES:
                    raise map_error(err, action="look up an image", region=region) from err
                continue  # ParameterNotFound, AccessDenied on SSM: try the next way
            except Exception as err:
                raise map_error(err, action="look up an image", region=region) from err
        try:
            images = self.ec2(region).describe_images(Owners=["amazon"], Filters=[
                {"Name": "name", "Values": AMI_NAME_PATTERNS}, {"Name": "architecture", "Values": [architecture]},
                {"Name": "state", "Values": ["available"]}])["Images"]
        except Exception as err:
            raise map_error(err, action="look up an image", region=region) from err
        if not images:
            raise InvalidSpec(f"found no default {architecture} image in {region}; set {AMI_ENV} to an AMI id there")
        self._amis[key] = max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]
        return self._amis[key]

    def _by_token(self, region: str, client_token: str) -> list[dict]:
        return self._instances(region, [{"Name": f"tag:{LAUNCH_TOKEN_TAG}", "Values": [client_token]}])

    def _instances(self, region: str, filters: list[dict]) -> list[dict]:
        out = []
        try:
            for page in self.ec2(region).get_paginator("describe_instances").paginate(Filters=filters):
                for reservation in page["Reservations"]:
                    out.extend(reservation["Instances"])
        except Exception as err:
            raise map_error(err, action="describe instances", region=region) from err
        return sorted(out, key=lambda i: (i.get("AmiLaunchIndex", 0), i["InstanceId"]))

    # -- Provider ---------------------------------------------------------------------------------
    def launch(self, offering: Offering, count: int, *, spot: bool, tags: dict[str, str],
               user_data: str | None, client_token: str) -> list[Machine]:
        check_launch_args(self.name, offering, count, tags, client_token)
        region, zone = offering.region, offering.zone
        if not region:
            raise InvalidSpec("the offering names no region",
                              errors=[{"field": "offering.region", "message": "required"}])
        self._used.add(region)
        existing = self._by_token(region, client_token)
        if existing:  # a retry of a launch that already happened: the same machines, never more
            return [machine_from_instance(i, region) for i in existing]

        info = self.instance_type_info(region, offering.instance_type)
        arches = (info.get("ProcessorInfo") or {}).get("SupportedArchitectures") or ["x86_64"]
        architecture = "arm64" if "x86_64" not in arches and "arm64" in arches else "x86_64"
        gpu = bool((info.get("GpuInfo") or {}).get("Gpus")) or offering.accelerator_count > 0
        image = self.resolve_ami(region, architecture, gpu)

        all_tags = [{"Key": k, "Value": v} for k, v in {**tags, LAUNCH_TOKEN_TAG: client_token}.items()]
        request: dict[str, Any] = {
            "ImageId": image, "InstanceType": offering.instance_type, "MinCount": count, "MaxCount": count,
            "ClientToken": ec2_client_token(client_token),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": all_tags},
                                  {"ResourceType": "volume", "Tags": all_tags}],
        }
        if zone:
            request["Placement"] = {"AvailabilityZone": zone}
        if user_data:
            request["UserData"] = user_data  # boto3 base64-encodes it
        if spot:
            request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        context = {"region": region, "zone": zone, "instance_type": offering.instance_type}
        try:
            response = self.ec2(region).run_instances(**request)
        except bx.ClientError as err:  # EC2 answered no: it started nothing
            raise map_error(err, action="launch instances", **context) from err
        except Exception as err:  # no answer (or a lost one): EC2 may have started them; find and undo
            error = map_error(err, action="launch instances", **context)
            raise self._rolled_back(error, region, client_token, []) from err
        instances = sorted(response.get("Instances", []), key=lambda i: i.get("AmiLaunchIndex", 0))
        if len(instances) != count:
            error = CapacityError(f"EC2 started {len(instances)} of {count} {offering.instance_type} in "
                                  f"{zone or region}", scope="zone")
            raise self._rolled_back(error, region, client_token, [i["InstanceId"] for i in instances])
        return [machine_from_instance(i, region) for i in instances]

    def _rolled_back(self, error: CumuloError, region: str, client_token: str, ids: list[str]) -> CumuloError:
        """Terminate what a failed launch started (known ids plus any found by its token tag)."""
        try:
            found = [i["InstanceId"] for i in self._by_token(region, client_token)
                     if (i.get("State") or {}).get("Name") != "terminated"]
            started = sorted(set(ids) | set(found))
            if started:
                self.terminate(started, region=region)
                error.message += f"; terminated the {len(started)} instance(s) it had started: {', '.join(started)}"
        except CumuloError as cleanup:
            error.message += (f"; could not check for or terminate instances it may have started "
                              f"(tag {LAUNCH_TOKEN_TAG}={client_token}): {cleanup}")
        error.args = (error.message,)
        return error

    def terminate(self, machine_ids: list[str], *, region: str) -> None:
        ids = list(dict.fromkeys(machine_ids))
        for start in range(0, len(ids), 1000):  # EC2 takes at most 1000 ids per call
            self._terminate_batch(ids[start:start + 1000], region)

    def _terminate_batch(self, ids: list[str], region: str) -> None:
        if not ids:
            return
        client = self.ec2(region)
        try:
            client.terminate_instances(InstanceIds=ids)
            return
        except bx.ClientError as err:
            code, message = _error_code(err)
            if code == "InvalidInstanceID.Malformed":
                raise InvalidSpec(f"not an EC2 instance id: {message}") from err
            if code != "InvalidInstanceID.NotFound":
                raise map_error(err, action="terminate instances", region=region) from err
        except Exception as err:
            raise map_error(err, action="terminate instances", region=region) from err
        if len(ids) == 1:  # already gone
            return
        for one in ids:  # one unknown id fails the whole call: do the known ones one by one
            self._terminate_batch([one], region)

    def describe(self, *, region: str | None = None, tags: dict[str, str] | None = None) -> list[Machine]:
        machines = []
        for r in ([region] if region else self.regions()):
            machines.extend(machine_from_instance(i, r) for i in self._instances(r, tag_filters(tags)))
        return machines
