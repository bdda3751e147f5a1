"""Tests for the report services: collecting from every source, offline reports."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import boto3
from botocore.stub import Stubber
from ctfakes import END, INVICTUS, KEY, START, lookup_item, lookup_params, record
from moto import mock_aws

from responder.reports.render import render_html, render_markdown
from responder.reports.service import collect_events, merge_records, offline_report
from responder.reports.sources import LOOKUP_EVENTS_SOURCE

INVICTUS_KEY = "AKIATFQR7NSC8Q4X20BJ"
FROZEN = datetime(2024, 5, 3, 9, 0, tzinfo=UTC)


def _log_file(records):
    return gzip.compress(json.dumps({"Records": records}).encode())


class TestCollectEvents:
    def test_lookup_and_s3_trail_merged_without_duplicates(self, gateway, clock):
        """An event both sources return is kept once; data events come from S3."""
        shared = record(1)
        lookup_only = record(2)
        data_event = record(3, event_name="GetObject", event_source="s3.amazonaws.com")
        client = gateway.client("cloudtrail", "us-east-1")
        with mock_aws(), Stubber(client) as stubber:
            s3 = gateway.client("s3", "us-east-1")
            s3.create_bucket(Bucket="trail")
            s3.put_object(
                Bucket="trail",
                Key="AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/a.json.gz",
                Body=_log_file([shared, data_event]),
            )
            stubber.add_response(
                "lookup_events",
                {"Events": [lookup_item(shared), lookup_item(lookup_only)]},
                lookup_params(),
            )

            records, coverage = collect_events(
                gateway,
                access_key_ids=[KEY],
                start=START,
                end=END,
                regions=["us-east-1"],
                trail_source="s3://trail/AWSLogs/",
                clock=clock,
                sleep=clock.sleep,
            )

            stubber.assert_no_pending_responses()

        assert sorted(r["eventID"] for r in records) == sorted(
            r["eventID"] for r in (shared, lookup_only, data_event)
        )
        [merged] = [r for r in records if r["eventID"] == shared["eventID"]]
        assert merged["responder:origins"] == [
            LOOKUP_EVENTS_SOURCE,
            "s3://trail/AWSLogs/",
        ]
        assert coverage.sources == [LOOKUP_EVENTS_SOURCE, "s3://trail/AWSLogs/"]
        assert coverage.files_read == 1
        assert coverage.complete is True

    def test_enabled_regions_read_when_none_given(self, gateway, clock):
        """With no regions given, every enabled region is read."""
        ec2 = gateway.client("ec2", "us-east-1")
        west = gateway.client("cloudtrail", "eu-west-1")
        east = gateway.client("cloudtrail", "us-east-1")
        with Stubber(ec2) as se, Stubber(west) as sw, Stubber(east) as st:
            se.add_response(
                "describe_regions",
                {"Regions": [{"RegionName": "us-east-1"}, {"RegionName": "eu-west-1"}]},
            )
            sw.add_response("lookup_events", {"Events": []}, lookup_params())
            st.add_response(
                "lookup_events", {"Events": [lookup_item(record(1))]}, lookup_params()
            )

            records, coverage = collect_events(
                gateway,
                access_key_ids=[KEY],
                start=START,
                end=END,
                clock=clock,
                sleep=clock.sleep,
            )

            for stubber in (se, sw, st):
                stubber.assert_no_pending_responses()

        assert len(records) == 1
        assert coverage.regions_read == ["eu-west-1", "us-east-1"]

    def test_region_list_failure_is_reported(self, gateway, clock):
        """Unlisted enabled regions: the home region is read and the gap is stated."""
        ec2 = gateway.client("ec2", "us-east-1")
        east = gateway.client("cloudtrail", "us-east-1")
        with Stubber(ec2) as se, Stubber(east) as st:
            se.add_client_error(
                "describe_regions", service_error_code="UnauthorizedOperation"
            )
            st.add_response("lookup_events", {"Events": []}, lookup_params())

            _, coverage = collect_events(
                gateway,
                access_key_ids=[KEY],
                start=START,
                end=END,
                clock=clock,
                sleep=clock.sleep,
            )

        assert coverage.regions_read == ["us-east-1"]
        assert (
            "UnauthorizedOperation" in coverage.regions_incomplete["(enabled regions)"]
        )
        assert coverage.complete is False

    def test_window_over_ninety_days_is_noted(self, gateway, clock):
        """A window longer than LookupEvents keeps is flagged in the notes."""
        start = END - timedelta(days=120)
        east = gateway.client("cloudtrail", "us-east-1")
        with Stubber(east) as stubber:
            params = lookup_params()
            params["StartTime"] = start
            stubber.add_response("lookup_events", {"Events": []}, params)

            _, coverage = collect_events(
                gateway,
                access_key_ids=[KEY],
                start=start,
                end=END,
                regions=["us-east-1"],
                clock=clock,
                sleep=clock.sleep,
            )

        assert any("90 days" in note for note in coverage.notes)

    def test_empty_region_list_skips_lookup_events(self, gateway, clock, tmp_path):
        """With no regions, only the trail is read and LookupEvents is not claimed."""
        (tmp_path / "a.json.gz").write_bytes(_log_file([record(1)]))

        records, coverage = collect_events(
            gateway,
            access_key_ids=[KEY],
            start=START,
            end=END,
            regions=[],
            trail_source=str(tmp_path),
            clock=clock,
            sleep=clock.sleep,
        )

        assert len(records) == 1
        assert coverage.sources == ["file:" + str(tmp_path.resolve())]
        assert coverage.notes == []
        assert clock.sleeps == []


class TestMergeRecords:
    def test_partial_record_replaced_by_full_one(self):
        """A record rebuilt from a lookup item gives way to the full trail record."""
        full = record(1)
        full["responder:origin"] = "file:/trail"
        partial = {
            "eventID": full["eventID"],
            "eventTime": full["eventTime"],
            "eventName": full["eventName"],
            "responder:partial": True,
            "responder:origin": LOOKUP_EVENTS_SOURCE,
            "responder:lookup_resources": [{"ResourceName": "alice"}],
        }

        merged = merge_records([partial, full])

        assert len(merged) == 1
        assert merged[0]["sourceIPAddress"] == "203.0.113.9"
        assert merged[0]["responder:lookup_resources"] == [{"ResourceName": "alice"}]
        assert merged[0]["responder:origins"] == [LOOKUP_EVENTS_SOURCE, "file:/trail"]
        assert "responder:partial" not in merged[0]

    def test_records_without_event_id_are_all_kept(self):
        """Records that cannot be identified are never merged away."""
        first = record(1, eventID=None)
        second = record(1, eventID=None)

        assert len(merge_records([first, second])) == 2


class TestOfflineReport:
    def test_corpus_folder_report(self):
        """The corpus report has the key's 2104 events and 47 of its derived keys."""
        report = offline_report(
            access_key_id=INVICTUS_KEY, path=str(INVICTUS), clock=lambda: FROZEN
        )

        keys = {event["access_key_id"] for event in report["events"]}
        own = [e for e in report["events"] if e["access_key_id"] == INVICTUS_KEY]
        assert report["summary"]["events"] == 2151
        assert len(report["events"]) == 2151
        assert len(own) == 2104
        assert len(keys) == 6  # five of the twelve derived keys were used
        assert report["summary"]["succeeded"] + report["summary"]["failed"] == 2151
        assert report["failed"]["total"] == report["summary"]["failed"]
        assert report["access_key"]["owner"] == "ir-analyst-a"
        assert report["access_key"]["account_id"] == "123837392027"
        assert report["access_key"]["type"] == "long-term"
        assert report["generated_at"] == "2024-05-03T09:00:00Z"
        assert report["coverage"]["files_read"] == 55
        assert report["coverage"]["complete"] is True
        assert report["responder_actions"] == []
        assert INVICTUS_KEY in render_markdown(report)
        assert INVICTUS_KEY in render_html(report)

    def test_window_limits_offline_report(self):
        """Start and end keep only the records inside the window."""
        start = datetime(2023, 7, 10, 12, 0, tzinfo=UTC)
        end = datetime(2023, 7, 10, 12, 10, tzinfo=UTC)

        report = offline_report(
            access_key_id=INVICTUS_KEY, path=str(INVICTUS), start=start, end=end
        )

        times = [event["time"] for event in report["events"]]
        assert 0 < len(times) < 2104
        assert min(times) >= "2023-07-10T12:00:00Z"
        assert max(times) <= "2023-07-10T12:10:00Z"
        assert report["window"] == {
            "start": "2023-07-10T12:00:00Z",
            "end": "2023-07-10T12:10:00Z",
        }

    def test_s3_offline_report(self):
        """An `s3://` path is read with the given S3 client."""
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="trail")
            s3.put_object(
                Bucket="trail",
                Key="AWSLogs/1/CloudTrail/us-east-1/2024/05/01/a.json.gz",
                Body=_log_file([record(1), record(2, errorCode="AccessDenied")]),
            )

            report = offline_report(
                access_key_id=KEY, path="s3://trail/AWSLogs/", s3_client=s3
            )

        assert report["summary"]["events"] == 2
        assert report["failed"]["total"] == 1
        assert report["coverage"]["sources"] == ["s3://trail/AWSLogs/"]
