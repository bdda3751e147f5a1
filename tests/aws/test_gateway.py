"""The AWS gateway: retries only what is transient, maps errors by code."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber
from structlog.testing import capture_logs

from responder.aws.session import ERROR_CLASSES, AwsGateway, map_client_error
from responder.exceptions import AccessDenied, AwsCallFailed, Throttled


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "req-1"},
        },
        "Op",
    )


class TestErrorMapping:
    @pytest.mark.parametrize("code", sorted(ERROR_CLASSES))
    def test_every_handled_code_is_mapped(self, code):
        """Each code we act on becomes its class, keeping operation and code."""
        error = map_client_error(client_error(code), "UpdateAccessKey")

        assert type(error) is ERROR_CLASSES[code]
        assert (error.operation, error.error_code, error.request_id) == (
            "UpdateAccessKey",
            code,
            "req-1",
        )

    def test_throttling_maps_to_throttled(self):
        """A throttling code maps to Throttled."""
        assert isinstance(
            map_client_error(client_error("ThrottlingException"), "X"), Throttled
        )

    def test_unknown_code_is_generic(self):
        """Other codes are AwsCallFailed, not a subclass."""
        assert type(map_client_error(client_error("Weird"), "X")) is AwsCallFailed


class TestRetries:
    def test_throttling_is_retried_and_logged(self):
        """Two throttles then success: three calls, two retry log lines."""
        gateway = AwsGateway(max_attempts=5, sleep=lambda _s: None)
        iam = gateway.client("iam")
        with Stubber(iam) as stub:
            for _ in range(2):
                stub.add_client_error("list_users", "Throttling", http_status_code=400)
            stub.add_response("list_users", {"Users": []})
            with capture_logs() as logs:
                response = gateway.call("iam", "ListUsers")

        assert response["Users"] == []
        retries = [entry for entry in logs if entry["event"] == "aws_call_retried"]
        assert [entry["attempt"] for entry in retries] == [1, 2]
        assert retries[0]["error_code"] == "Throttling"

    def test_attempts_are_bounded(self):
        """Permanent throttling stops after max_attempts with Throttled."""
        gateway = AwsGateway(max_attempts=3, sleep=lambda _s: None)
        iam = gateway.client("iam")
        with Stubber(iam) as stub:
            for _ in range(3):
                stub.add_client_error("list_users", "Throttling", http_status_code=400)
            with pytest.raises(Throttled):
                gateway.call("iam", "ListUsers")
            stub.assert_no_pending_responses()

    def test_access_denied_is_not_retried(self):
        """A 4xx that is not throttling fails at once."""
        gateway = AwsGateway(max_attempts=5, sleep=lambda _s: None)
        iam = gateway.client("iam")
        with Stubber(iam) as stub:
            stub.add_client_error("list_users", "AccessDenied", http_status_code=403)
            with pytest.raises(AccessDenied):
                gateway.call("iam", "ListUsers")

    def test_5xx_retried_only_when_idempotent(self):
        """A 500 on a non-idempotent call is not resent (it may have run)."""
        gateway = AwsGateway(max_attempts=5, sleep=lambda _s: None)
        iam = gateway.client("iam")
        with Stubber(iam) as stub:
            stub.add_client_error(
                "create_access_key", "ServiceFailure", http_status_code=500
            )
            with pytest.raises(AwsCallFailed):
                gateway.call("iam", "CreateAccessKey", idempotent=False, UserName="a")
            stub.assert_no_pending_responses()

    def test_timeout_on_idempotent_call_is_retried(self, aws):
        """A read timeout on an idempotent call is sent again."""
        gateway = AwsGateway(max_attempts=3, sleep=lambda _s: None)
        seen = {"n": 0}

        def time_out_once(**_kwargs):
            seen["n"] += 1
            if seen["n"] == 1:
                raise ReadTimeoutError(endpoint_url="https://iam")

        gateway.client("iam").meta.events.register(
            "before-send.iam.ListUsers", time_out_once
        )

        assert gateway.call("iam", "ListUsers")["Users"] == []
        assert seen["n"] == 2


class TestOperationNames:
    def test_acronym_operations_reach_their_methods(self, aws, gateway):
        """ListMFADevices is list_mfa_devices (botocore's mapping, not a naive one)."""
        boto3.client("iam", region_name="us-east-1").create_user(UserName="erin")

        listed = gateway.call("iam", "ListMFADevices", UserName="erin")

        assert listed["MFADevices"] == []
