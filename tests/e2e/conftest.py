"""Shared end-to-end fixtures: the real moto server (EC2 emulation) for the resources tests, and a
real webhook receiver for the alert tests."""

import pytest

from tests.helpers import WebhookReceiver
from tests.integration.providers.conftest import aws_env, ec2_faults, moto_server  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def receiver():
    """An HTTP endpoint on loopback recording what alert webhooks POST to it."""
    r = WebhookReceiver()
    yield r
    r.close()
