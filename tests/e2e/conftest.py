"""The real moto server (EC2 emulation) for the resources end-to-end tests."""

from tests.integration.providers.conftest import aws_env, ec2_faults, moto_server  # noqa: F401 - fixtures
