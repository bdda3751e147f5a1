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
        assert report["summary"]["events"] == 2104
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
