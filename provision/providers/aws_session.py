"""boto3 sessions and errors for the `aws` provider: every AWS error becomes `StepFailed` with one readable line
(and a hint for the common ones); waiters poll with explicit delays."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from provision.errors import InputError, StepFailed

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 6}, user_agent_extra="dockyard")
HINTS = {
    "AuthFailure": "check the AWS credentials (profile, environment, SSO session)",
    "InvalidClientTokenId": "check the AWS credentials (profile, environment, SSO session)",
    "ExpiredToken": "the AWS session expired: log in again (aws sso login)",
    "UnauthorizedOperation": "the AWS identity lacks an IAM permission for this call",
    "InstanceLimitExceeded": "an EC2 quota is reached: request an increase or free capacity",
    "VcpuLimitExceeded": "the vCPU quota is reached: request an increase or use a smaller instance type",
    "InvalidSubnetID.NotFound": "check host.subnet_id (and host.region)",
    "InvalidParameterValue": "check the playbook's host settings",
    "InvalidAMIID.NotFound": "check host.image: AMI ids differ per region",
    "InvalidAMIID.Malformed": "check host.image",
}
WAIT_DELAY = 5.0  # seconds between waiter polls
WAIT_MAX = 600.0  # seconds a waiter may take


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    if "Encoded authorization failure message" in text:  # a kilobyte of base64 nobody can read
        text = text.split("Encoded authorization failure message")[0].rstrip(" .") + " (details encoded)"
    return text if len(text) <= limit else text[:limit] + "…"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Error")
        message = f"AWS {code}: {_one_line(err.get('Message', '') or str(exc))}"
        return message + (f" ({HINTS[code]})" if code in HINTS else "")
    if isinstance(exc, WaiterError):
        return _one_line(f"{exc.name} gave up: {exc.kwargs.get('reason', exc)}")
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return ("no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
                "or log in with `aws sso login`")
    return _one_line(f"{name}: {exc}")


@contextlib.contextmanager
def aws_errors(doing: str = "") -> Iterator[None]:
    """botocore errors → StepFailed (exit 1) with one readable line."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        prefix = f"{doing}: " if doing else ""
        raise StepFailed(prefix + describe_error(exc)) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def make_session(pb: Any) -> boto3.Session:
    with aws_errors("AWS session"):
        session = boto3.Session(region_name=pb.host.region or None)
    if not session.region_name:
        raise InputError.single("no AWS region: set host.region in the playbook, or AWS_REGION / "
                                "AWS_DEFAULT_REGION / a profile region", file=pb.source,
                                key_path="host.region")
    return session
