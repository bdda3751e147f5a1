"""Tests for the Athena query mode: SQL, query runs, derived-key queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.stub import ANY, Stubber
from structlog.testing import capture_logs

from responder.aws.session import AwsGateway
from responder.exceptions import AccessDenied, ExternalServiceError
from responder.reports.athena import (
    AthenaQueryFailed,
    AthenaQueryTimedOut,
    UnsafeQueryInput,
    athena_report_records,
    build_query,
    run_query,
)

KEY = "AKIAEXAMPLEKEY000001"
SESSION_KEY = "ASIAEXAMPLESESSION01"
START = datetime(2024, 5, 1, 22, tzinfo=UTC)
END = datetime(2024, 5, 3, 6, tzinfo=UTC)
TABLE = "security.cloudtrail_org"
WORKGROUP = "responder"
OUTPUT = "s3://athena-results-example/responder/"
HEADER = [
    "eventid",
    "eventtime",
    "eventsource",
    "eventname",
    "awsregion",
    "sourceipaddress",
    "useragent",
    "errorcode",
    "errormessage",
    "readonly",
    "recipientaccountid",
    "requestparameters",
    "responseelements",
    "useridentity_type",
    "useridentity_principalid",
    "useridentity_arn",
    "useridentity_accountid",
    "useridentity_username",
    "useridentity_accesskeyid",
    "resource_arns",
    "resource_types",
]


def _query(**overrides):
    arguments = {
        "table": TABLE,
        "access_key_ids": [KEY],
        "start": START,
        "end": END,
        "organization_id": "o-abcdef1234",
        "accounts": ["111122223333"],
        "regions": ["us-east-1"],
    }
    arguments.update(overrides)
    return build_query(**arguments)


def _row(values):
    return {
        "Data": [{} if value is None else {"VarCharValue": value} for value in values]
    }


def _result_row(event_id, *, key=KEY, name="ListUsers", response=None, error=None):
    values = {
        "eventid": event_id,
        "eventtime": "2024-05-02T10:00:00Z",
        "eventsource": "iam.amazonaws.com",
        "eventname": name,
        "awsregion": "us-east-1",
        "sourceipaddress": "203.0.113.9",
        "useragent": "aws-cli/2.15.0",
        "errorcode": error,
        "errormessage": None,
        "readonly": "true",
        "recipientaccountid": "111122223333",
        "requestparameters": json.dumps({"maxItems": 10}),
        "responseelements": json.dumps(response) if response else None,
        "useridentity_type": "IAMUser",
        "useridentity_principalid": "AIDAEXAMPLE",
        "useridentity_arn": "arn:aws:iam::111122223333:user/alice",
        "useridentity_accountid": "111122223333",
        "useridentity_username": "alice",
        "useridentity_accesskeyid": key,
        "resource_arns": json.dumps(["arn:aws:iam::111122223333:user/bob"]),
        "resource_types": json.dumps(["AWS::IAM::User"]),
    }
    return _row([values[column] for column in HEADER])


def _execution(execution_id, state, scanned=None, reason=None):
    status = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    execution = {"QueryExecutionId": execution_id, "Status": status}
    if scanned is not None:
        execution["Statistics"] = {"DataScannedInBytes": scanned}
    return {"QueryExecution": execution}


def _stub_start(stubber, execution_id, sql=ANY):
    stubber.add_response(
        "start_query_execution",
        {"QueryExecutionId": execution_id},
        {
            "QueryString": sql,
            "WorkGroup": WORKGROUP,
            "ClientRequestToken": ANY,
            "ResultConfiguration": {"OutputLocation": OUTPUT},
        },
    )


def _stub_state(stubber, execution_id, state, **extra):
    stubber.add_response(
        "get_query_execution",
        _execution(execution_id, state, **extra),
        {"QueryExecutionId": execution_id},
    )


def _stub_results(stubber, execution_id, rows, *, token=None, next_token=None):
    expected = {"QueryExecutionId": execution_id}
    if token:
        expected["NextToken"] = token
    response = {"ResultSet": {"Rows": rows}}
    if next_token:
        response["NextToken"] = next_token
    stubber.add_response("get_query_results", response, expected)


@pytest.fixture
def athena_gateway():
    """Return a one-attempt gateway and a Stubber on its Athena client."""
    gateway = AwsGateway(region="us-east-1", max_attempts=1, sleep=lambda _s: None)
    with Stubber(gateway.client("athena")) as stubber:
        yield gateway, stubber
        stubber.assert_no_pending_responses()


class TestBuildQuery:
    def test_build_query_two_keys_filters_keys_time_and_partitions(self):
        """Two keys give one IN list, eventtime bounds and the partition predicates."""
        sql = _query(
            access_key_ids=[SESSION_KEY, KEY], regions=["us-east-1", "eu-west-1"]
        )

        assert f"useridentity.accesskeyid IN ('{KEY}', '{SESSION_KEY}')" in sql
        assert "eventtime >= '2024-05-01T22:00:00Z'" in sql
        assert "eventtime <= '2024-05-03T06:00:00Z'" in sql
        assert "\"timestamp\" BETWEEN '2024/05/01' AND '2024/05/03'" in sql
        assert "region IN ('eu-west-1', 'us-east-1')" in sql
        assert "account IN ('111122223333')" in sql
        assert 'FROM "security"."cloudtrail_org"' in sql
        assert sql.endswith("ORDER BY eventtime, eventid")

    def test_build_query_unpartitioned_table_filters_on_columns(self):
        """Without partitions, regions and accounts are filtered on record columns."""
        sql = _query(partitioned=False, organization_id=None, table="cloudtrail")

        assert "timestamp" not in sql
        assert "awsregion IN ('us-east-1')" in sql
        assert "recipientaccountid IN ('111122223333')" in sql
        assert 'FROM "cloudtrail"' in sql

    def test_build_query_partitioned_single_account_uses_recipient_account(self):
        """A partitioned table without an organisation has no `account` partition."""
        sql = _query(organization_id=None)

        assert "recipientaccountid IN ('111122223333')" in sql
        assert "account IN" not in sql.replace("recipientaccountid IN", "")

    def test_build_query_time_bounds_are_utc_whatever_the_offset(self):
        """An aware time in another offset is written as UTC, days included."""
        tokyo = timezone(timedelta(hours=9))
        sql = _query(start=datetime(2024, 5, 2, 7, tzinfo=tokyo))

        assert "eventtime >= '2024-05-01T22:00:00Z'" in sql
        assert "BETWEEN '2024/05/01'" in sql

    def test_build_query_blanks_session_tokens_in_sql(self):
        """The query blanks session tokens before Athena writes its result file."""
        sql = _query()

        assert "regexp_replace(responseelements" in sql
        assert "sessionToken|secretAccessKey" in sql

    @pytest.mark.parametrize(
        "overrides",
        [
            {"table": "cloudtrail; DROP TABLE x"},
            {"table": 'cloudtrail" --'},
            {"table": "a.b.c"},
            {"table": "cloudtrail\n"},
            {"access_key_ids": ["AKIAEXAMPLEKEY000001') OR ('1'='1"]},
            {"access_key_ids": ["akiaexamplekey000001"]},
            {"access_key_ids": []},
            {"accounts": ["1111' OR '1'='1"]},
            {"regions": ["us-east-1' --"]},
            {"organization_id": "o-x' OR 1=1"},
            {"start": datetime(2024, 5, 1)},
            {"start": END, "end": START},
        ],
    )
    def test_build_query_malicious_input_is_refused(self, overrides):
        """Any value outside its strict pattern is refused, not quoted."""
        with pytest.raises(UnsafeQueryInput) as caught:
            _query(**overrides)

        # The hostile value is never echoed: no quote of it reaches the message.
        assert "'" not in str(caught.value)
        assert "DROP" not in str(caught.value)


class TestRunQuery:
    def test_run_query_running_then_succeeded_reads_two_pages(self, athena_gateway):
        """A query polled RUNNING then SUCCEEDED yields the rows of both pages."""
        gateway, stubber = athena_gateway
        sleeps = []
        _stub_start(stubber, "q-1", sql="SELECT 1")
        _stub_state(stubber, "q-1", "RUNNING")
        _stub_state(stubber, "q-1", "SUCCEEDED", scanned=2048)
        _stub_results(
            stubber, "q-1", [_row(HEADER), _result_row("e-1")], next_token="page-2"
        )
        _stub_results(
            stubber,
            "q-1",
            [
                _result_row(
                    "e-2",
                    name="AssumeRole",
                    response={
                        "credentials": {
                            "accessKeyId": SESSION_KEY,
                            "sessionToken": "[removed]",
                            "expiration": "May 1, 2024 10:00:00 PM",
                        }
                    },
                )
            ],
            token="page-2",
        )

        with capture_logs() as logs:
            results = run_query(
                gateway.call,
                sql="SELECT 1",
                workgroup=WORKGROUP,
                output_location=OUTPUT,
                poll=1.5,
                sleep=sleeps.append,
                max_wait=60,
                source="athena:test",
            )
            records = list(results)

        assert sleeps == [1.5]
        assert results.execution_id == "q-1"
        assert results.data_scanned_bytes == 2048
        assert [record["eventID"] for record in records] == ["e-1", "e-2"]
        first = records[0]
        assert first["userIdentity"] == {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": "arn:aws:iam::111122223333:user/alice",
            "accountId": "111122223333",
            "userName": "alice",
            "accessKeyId": KEY,
        }
        assert first["requestParameters"] == {"maxItems": 10}
        assert first["responseElements"] is None
        assert first["readOnly"] is True
        assert "errorCode" not in first
        assert first["resources"] == [
            {"ARN": "arn:aws:iam::111122223333:user/bob", "type": "AWS::IAM::User"}
        ]
        assert first["responder:origin"] == "athena:test"
        assert records[1]["responseElements"]["credentials"] == {
            "accessKeyId": SESSION_KEY,
            "expiration": "May 1, 2024 10:00:00 PM",
        }
        finished = [e for e in logs if e["event"] == "athena_query_finished"]
        assert finished == [
            {
                "event": "athena_query_finished",
                "log_level": "info",
                "execution_id": "q-1",
                "data_scanned_bytes": 2048,
            }
        ]

    def test_run_query_failed_raises_clear_error(self, athena_gateway):
        """A FAILED query raises AthenaQueryFailed with its ID, state and reason."""
        gateway, stubber = athena_gateway
        _stub_start(stubber, "q-2")
        _stub_state(
            stubber, "q-2", "FAILED", reason="TABLE_NOT_FOUND: line 3:6: Table missing"
        )

        with pytest.raises(AthenaQueryFailed) as caught:
            run_query(
                gateway.call,
                sql="SELECT 1",
                workgroup=WORKGROUP,
                output_location=OUTPUT,
                sleep=lambda _s: None,
            )

        assert isinstance(caught.value, ExternalServiceError)
        assert caught.value.execution_id == "q-2"
        assert caught.value.state == "FAILED"
        assert "TABLE_NOT_FOUND" in str(caught.value)

    def test_run_query_still_running_is_stopped_and_raises(self, athena_gateway):
        """A query still running after max_wait is stopped and reported as timed out."""
        gateway, stubber = athena_gateway
        sleeps = []
        _stub_start(stubber, "q-3")
        for _ in range(3):
            _stub_state(stubber, "q-3", "RUNNING")
        stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-3"})

        with pytest.raises(AthenaQueryTimedOut) as caught:
            run_query(
                gateway.call,
                sql="SELECT 1",
                workgroup=WORKGROUP,
                output_location=OUTPUT,
                poll=5,
                sleep=sleeps.append,
                max_wait=10,
            )

        assert sleeps == [5, 5]
        assert caught.value.state == "TIMEOUT"

    def test_run_query_access_denied_is_our_error(self, athena_gateway):
        """An Athena AccessDeniedException surfaces as the responder's AccessDenied."""
        gateway, stubber = athena_gateway
        stubber.add_client_error(
            "start_query_execution",
            service_error_code="AccessDeniedException",
            service_message="not authorised",
            http_status_code=400,
        )

        with pytest.raises(AccessDenied) as caught:
            run_query(
                gateway.call,
                sql="SELECT 1",
                workgroup=WORKGROUP,
                output_location=OUTPUT,
                sleep=lambda _s: None,
            )

        assert caught.value.operation == "StartQueryExecution"


class TestAthenaReportRecords:
    def test_athena_report_records_queries_minted_key_second(self, athena_gateway):
        """A key minted in the first results is read by a second query."""
        gateway, stubber = athena_gateway
        first_sql = _query(access_key_ids=[KEY])
        second_sql = _query(access_key_ids=[SESSION_KEY])
        _stub_start(stubber, "q-1", sql=first_sql)
        _stub_state(stubber, "q-1", "SUCCEEDED", scanned=100)
        _stub_results(
            stubber,
            "q-1",
            [
                _row(HEADER),
                _result_row("e-1"),
                _result_row(
                    "e-2",
                    name="GetSessionToken",
                    response={"credentials": {"accessKeyId": SESSION_KEY}},
                ),
                _result_row(
                    "e-3",
                    name="AssumeRole",
                    error="AccessDenied",
                    response={"credentials": {"accessKeyId": "ASIANEVERHANDEDOUT01"}},
                ),
            ],
        )
        _stub_start(stubber, "q-2", sql=second_sql)
        _stub_state(stubber, "q-2", "SUCCEEDED", scanned=50)
        _stub_results(
            stubber,
            "q-2",
            [_row(HEADER), _result_row("e-4", key=SESSION_KEY), _result_row("e-1")],
        )

        records, notes = athena_report_records(
            gateway.call,
            table=TABLE,
            seed_key=KEY,
            start=START,
            end=END,
            workgroup=WORKGROUP,
            output_location=OUTPUT,
            organization_id="o-abcdef1234",
            accounts=["111122223333"],
            regions=["us-east-1"],
            sleep=lambda _s: None,
        )

        assert [record["eventID"] for record in records] == ["e-1", "e-2", "e-3", "e-4"]
        assert records[0]["responder:origin"] == f"athena:{TABLE}"
        assert len(notes) == 2
        assert "q-1 (depth 1, keys AKIAEXAMPLEKEY000001): 3 records" in notes[0]
        assert "100 bytes scanned" in notes[0]
        assert "q-2 (depth 2, keys ASIAEXAMPLESESSION01): 2 records" in notes[1]
        assert "50 bytes scanned" in notes[1]

    def test_athena_report_records_depth_bound_notes_unread_keys(self, athena_gateway):
        """Keys minted at the last allowed depth are named as not queried."""
        gateway, stubber = athena_gateway
        _stub_start(stubber, "q-1")
        _stub_state(stubber, "q-1", "SUCCEEDED")
        _stub_results(
            stubber,
            "q-1",
            [
                _row(HEADER),
                _result_row(
                    "e-1",
                    name="CreateAccessKey",
                    response={"accessKey": {"accessKeyId": "AKIANEWLONGTERMKEY01"}},
                ),
            ],
        )

        records, notes = athena_report_records(
            gateway.call,
            table=TABLE,
            seed_key=KEY,
            start=START,
            end=END,
            workgroup=WORKGROUP,
            output_location=OUTPUT,
            sleep=lambda _s: None,
            max_depth=1,
        )

        assert len(records) == 1
        assert "scan size unknown" in notes[0]
        assert notes[1].startswith("Athena: 1 minted key(s) not queried")
        assert notes[1].endswith("AKIANEWLONGTERMKEY01")
