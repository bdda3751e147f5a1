"""The command line: offline reports over exported CloudTrail files."""

from __future__ import annotations

import json

from helpers import CORPUS

from responder.cli import main

INVICTUS = CORPUS / "cloudtrail" / "invictus-ir_aws_dataset_stratus-2023-07-10"


class TestOfflineReport:
    def test_report_over_real_folder_counts_the_key(self, tmp_path, capsys):
        """`responder report` over the real capture finds the key's 2,104 events."""
        out = tmp_path / "r.json"

        status = main(
            [
                "report",
                "--access-key-id",
                "AKIATFQR7NSC8Q4X20BJ",
                "--cloudtrail",
                str(INVICTUS),
                "--format",
                "json",
                "--out",
                str(out),
            ]
        )

        report = json.loads(out.read_text())
        assert status == 0
        own = [
            e for e in report["events"] if e["chain"] == [report["access_key"]["id"]]
        ]
        assert len(own) == 2104
        assert report["access_key"]["id"] == "AKIATFQR7NSC8Q4X20BJ"

    def test_missing_path_is_an_incomplete_report_and_exit_1(self, tmp_path, capsys):
        """A path that does not exist gives exit 1 and says the report is incomplete."""
        status = main(
            [
                "report",
                "--access-key-id",
                "AKIATFQR7NSC8Q4X20BJ",
                "--cloudtrail",
                str(tmp_path / "nope"),
            ]
        )

        assert status == 1
        assert "incomplete" in capsys.readouterr().err


class TestAthenaReport:
    def test_athena_report_runs_the_query_and_builds_a_report(self):
        """--athena-table: one query, its notes in coverage, a schema-2 report."""
        import argparse

        from botocore.stub import ANY, Stubber

        from responder.aws.session import AwsGateway
        from responder.cli import _athena_report

        gateway = AwsGateway(region="us-east-1", max_attempts=1, sleep=lambda _s: None)
        args = argparse.Namespace(
            access_key_id="AKIA" + "A" * 16,
            athena_table="security.cloudtrail_org",
            athena_workgroup="primary",
            athena_output="s3://results/responder/",
            organization_id="o-abc123def4",
            days=7,
        )
        with Stubber(gateway.client("athena")) as stubber:
            stubber.add_response(
                "start_query_execution",
                {"QueryExecutionId": "q-1"},
                {
                    "QueryString": ANY,
                    "WorkGroup": "primary",
                    "ClientRequestToken": ANY,
                    "ResultConfiguration": {
                        "OutputLocation": "s3://results/responder/"
                    },
                },
            )
            stubber.add_response(
                "get_query_execution",
                {
                    "QueryExecution": {
                        "QueryExecutionId": "q-1",
                        "Status": {"State": "SUCCEEDED"},
                    }
                },
                {"QueryExecutionId": "q-1"},
            )
            stubber.add_response(
                "get_query_results",
                {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": "eventtime"}]}]}},
                {"QueryExecutionId": "q-1"},
            )

            report = _athena_report(args, gateway=gateway, poll=0)

            stubber.assert_no_pending_responses()
        assert report["schema_version"] == 2
        assert report["summary"]["events"] == 0
        assert "athena:security.cloudtrail_org" in report["coverage"]["sources"]
        assert any("q-1" in note for note in report["coverage"]["notes"])
