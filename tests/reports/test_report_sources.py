"""Tests for reading a key's records: LookupEvents, trail files, coverage."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import shutil
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from ctfakes import (
    DIGEST_FILE,
    END,
    INVICTUS,
    KEY,
    OTHER_KEY,
    START,
    lookup_item,
    lookup_params,
    record,
)
from moto import mock_aws
from structlog.testing import capture_logs

from responder.reports.sources import (
    LOOKUP_EVENTS_SOURCE,
    Coverage,
    RegionPacer,
    Window,
    enabled_regions,
    read_lookup_events,
    read_trail_files,
    record_from_lookup_item,
    s3_caller,
    select_records,
)

WINDOW = Window(START, END)
INVICTUS_KEY = "AKIATFQR7NSC8Q4X20BJ"


def _read(gateway, clock, regions, keys=(KEY,)):
    coverage = Coverage(window=WINDOW)
    pacer = RegionPacer(clock=clock, sleep=clock.sleep)
    records = read_lookup_events(
        gateway,
        access_key_ids=list(keys),
        regions=regions,
        window=WINDOW,
        coverage=coverage,
        pacer=pacer,
    )
    return records, coverage


def _throttle(stubber, params):
    stubber.add_client_error(
        "lookup_events",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
        expected_params=params,
    )


def _log_file(records):
    return json.dumps({"Records": records}).encode()


class TestEnabledRegions:
    def test_enabled_regions_lists_account_regions_sorted(self, gateway):
        """Enabled regions come from EC2 DescribeRegions, sorted by name."""
        with mock_aws():
            regions = enabled_regions(gateway)

        assert "us-east-1" in regions
        assert "eu-west-1" in regions
        assert regions == sorted(regions)


class TestReadLookupEvents:
    def test_three_pages_read_with_same_window_on_every_call(self, gateway, clock):
        """Pages of 50, 50 and 7 are all read, each request with the same window."""
        items = [lookup_item(record(n)) for n in range(107)]
        client = gateway.client("cloudtrail", "us-east-1")
        with Stubber(client) as stubber:
            stubber.add_response(
                "lookup_events",
                {"Events": items[:50], "NextToken": "t1"},
                lookup_params(),
            )
            stubber.add_response(
                "lookup_events",
                {"Events": items[50:100], "NextToken": "t2"},
                lookup_params(token="t1"),
            )
            stubber.add_response(
                "lookup_events", {"Events": items[100:]}, lookup_params(token="t2")
            )

            records, coverage = _read(gateway, clock, ["us-east-1"])

            stubber.assert_no_pending_responses()

        assert len(records) == 107
        assert {r["eventID"] for r in records} == {i["EventId"] for i in items}
        assert coverage.regions_read == ["us-east-1"]
        assert coverage.regions_incomplete == {}
        assert coverage.sources == [LOOKUP_EVENTS_SOURCE]
        assert any("management events only" in note for note in coverage.notes)

    def test_throttled_region_recovers_and_permanent_throttle_is_incomplete(
        self, gateway, clock
    ):
        """Two throttles are retried; a region throttled every time is incomplete."""
        items = [lookup_item(record(n)) for n in range(3)]
        west_items = [lookup_item(record(n, region="eu-west-1")) for n in range(2)]
        east = gateway.client("cloudtrail", "us-east-1")
        west = gateway.client("cloudtrail", "eu-west-1")
        north = gateway.client("cloudtrail", "eu-north-1")
        with Stubber(east) as se, Stubber(west) as sw, Stubber(north) as sn:
            _throttle(se, lookup_params())
            _throttle(se, lookup_params())
            se.add_response("lookup_events", {"Events": items}, lookup_params())
            for _ in range(3):
                _throttle(sw, lookup_params())
            sn.add_response("lookup_events", {"Events": west_items}, lookup_params())

            with capture_logs() as logs:
                records, coverage = _read(
                    gateway, clock, ["us-east-1", "eu-west-1", "eu-north-1"]
                )

            for stubber in (se, sw, sn):
                stubber.assert_no_pending_responses()

        assert len(records) == 5
        assert sorted(coverage.regions_read) == ["eu-north-1", "us-east-1"]
        assert list(coverage.regions_incomplete) == ["eu-west-1"]
        assert "ThrottlingException" in coverage.regions_incomplete["eu-west-1"]
        assert coverage.complete is False
        incomplete = [
            e for e in logs if e["event"] == "lookup_events_region_incomplete"
        ]
        assert [(e["region"], e["error_code"]) for e in incomplete] == [
            ("eu-west-1", "ThrottlingException")
        ]
        retried = [e for e in logs if e["event"] == "aws_call_retried"]
        assert len(retried) == 4

    def test_access_denied_region_is_incomplete_with_reason(self, gateway, clock):
        """A region that refuses the call is listed incomplete, not read as empty."""
        client = gateway.client("cloudtrail", "ap-east-1")
        with Stubber(client) as stubber:
            stubber.add_client_error(
                "lookup_events",
                service_error_code="UnrecognizedClientException",
                service_message="The security token included in the request is invalid",
                http_status_code=400,
                expected_params=lookup_params(),
            )

            records, coverage = _read(gateway, clock, ["ap-east-1"])

        assert records == []
        assert coverage.regions_read == []
        assert "UnrecognizedClientException" in coverage.regions_incomplete["ap-east-1"]

    def test_events_kept_when_cloudtrail_event_unusable(self, gateway, clock):
        """Items with a missing, null or non-JSON CloudTrailEvent are kept."""
        good = lookup_item(record(1))
        missing = lookup_item(record(2))
        del missing["CloudTrailEvent"]
        null = lookup_item(record(3), CloudTrailEvent="null")
        broken = lookup_item(record(4), CloudTrailEvent='{"eventName": ')
        listed = lookup_item(record(5), CloudTrailEvent="[1, 2]")
        odd_resources = lookup_item(
            record(6, resources=["arn:aws:s3:::bucket", 7, None, {"ARN": "arn:x"}])
        )
        client = gateway.client("cloudtrail", "us-east-1")
        with Stubber(client) as stubber:
            stubber.add_response(
                "lookup_events",
                {"Events": [good, missing, null, broken, listed, odd_resources]},
                lookup_params(),
            )

            records, coverage = _read(gateway, clock, ["us-east-1"])

        assert len(records) == 6
        assert coverage.parse_problems == {"CloudTrailEvent": 4}
        rebuilt = {r["eventID"]: r for r in records if r.get("responder:partial")}
        assert sorted(rebuilt) == [
            "evt-us-east-1-000002",
            "evt-us-east-1-000003",
            "evt-us-east-1-000004",
            "evt-us-east-1-000005",
        ]
        assert rebuilt["evt-us-east-1-000002"]["eventName"] == "ListUsers"
        assert rebuilt["evt-us-east-1-000002"]["eventTime"] == "2024-05-01T10:00:02Z"
        assert rebuilt["evt-us-east-1-000002"]["userIdentity"]["accessKeyId"] == KEY

    def test_calls_in_one_region_are_paced(self, gateway, clock):
        """Consecutive requests to one region are at least the interval apart."""
        sent: list[tuple[str, float]] = []
        regions = ["us-east-1", "eu-west-1"]
        stubbers = []
        for region in regions:
            client = gateway.client("cloudtrail", region)
            client.meta.events.register(
                "before-parameter-build.cloudtrail.LookupEvents",
                lambda region=region, **_: sent.append((region, clock.now)),
            )
            stubber = Stubber(client)
            for key in (KEY, OTHER_KEY):
                stubber.add_response(
                    "lookup_events",
                    {"Events": [], "NextToken": "t"},
                    lookup_params(key),
                )
                stubber.add_response(
                    "lookup_events", {"Events": []}, lookup_params(key, token="t")
                )
            stubber.activate()
            stubbers.append(stubber)

        _read(gateway, clock, regions, keys=(KEY, OTHER_KEY))

        for stubber in stubbers:
            stubber.assert_no_pending_responses()
            stubber.deactivate()
        assert len(sent) == 8
        for region in regions:
            times = [at for name, at in sent if name == region]
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert len(gaps) == 3
            assert all(gap >= 0.55 - 1e-9 for gap in gaps)
        first_west = next(at for name, at in sent if name == "eu-west-1")
        last_east = [at for name, at in sent if name == "us-east-1"][-1]
        assert first_west == last_east

    def test_pacer_sleeps_only_the_remaining_interval(self, clock):
        """A pacer waits what is left of the interval, and nothing across regions."""
        pacer = RegionPacer(interval=0.55, clock=clock, sleep=clock.sleep)

        pacer.wait("us-east-1")
        clock.now += 0.3
        pacer.wait("us-east-1")
        pacer.wait("eu-west-1")
        clock.now += 1.0
        pacer.wait("us-east-1")

        assert clock.sleeps == [pytest.approx(0.25)]

    def test_lookup_item_parses_event_time_forms(self):
        """Datetime, epoch float and offset EventTimes all rebuild to the same UTC."""
        moment = datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
        forms = [moment, moment.timestamp(), "2024-05-01T19:00:01+09:00"]

        times = []
        for form in forms:
            item = lookup_item(record(1), EventTime=form, CloudTrailEvent="oops")
            rebuilt, problem = record_from_lookup_item(
                item, region="us-east-1", access_key_id=KEY
            )
            times.append(rebuilt["eventTime"])
            assert problem == "CloudTrailEvent"

        assert times == ["2024-05-01T10:00:01Z"] * 3

    def test_lookup_item_tolerates_non_object_resources(self):
        """An item whose Resources hold non-objects is still turned into a record."""
        item = lookup_item(record(1), Resources=["bucket", 3, {"ResourceName": "r"}])

        rebuilt, problem = record_from_lookup_item(
            item, region="us-east-1", access_key_id=KEY
        )

        assert problem is None
        assert rebuilt["responder:lookup_resources"] == item["Resources"]
        assert rebuilt["responder:region"] == "us-east-1"


class TestSelectRecords:
    def test_selects_only_records_made_with_the_key(self):
        """A key named in another principal's responseElements is not selected."""
        ours = record(1)
        theirs = record(2, key=OTHER_KEY, responseElements={"user": {"key": KEY}})

        selected = select_records(_log_file([ours, theirs]), [KEY])

        assert [r["eventID"] for r in selected] == [ours["eventID"]]

    def test_file_without_the_key_is_not_parsed(self):
        """A log file whose bytes never name the key is not parsed at all."""
        data = b'{"Records": [' + b"not json at all"

        selected = select_records(data, [KEY])

        assert selected == []

    def test_gzip_detected_by_magic_bytes(self):
        """Gzipped bytes are inflated whatever the file is called."""
        data = gzip.compress(_log_file([record(1)]))

        selected = select_records(data, [KEY])

        assert len(selected) == 1

    def test_digest_file_is_not_a_log_file(self):
        """A CloudTrail digest file is recognised as not `{"Records": [...]}`."""
        selected = select_records(DIGEST_FILE.read_bytes(), ["123456789123"])

        assert selected is None

    def test_records_key_not_a_list_is_not_a_log_file(self):
        """A JSON object whose Records is not a list is skipped, not crashed on."""
        data = json.dumps({"Records": {"key": KEY}}).encode()

        assert select_records(data, [KEY]) is None

    def test_window_filters_records(self):
        """Records outside the window are dropped; one without a time is kept."""
        inside = record(1, at="2024-05-01T12:00:00Z")
        before = record(2, at="2024-04-30T23:59:59Z")
        after = record(3, at="2024-05-02T00:00:01Z")
        timeless = record(4, at="never")

        selected = select_records(
            _log_file([inside, before, after, timeless]), [KEY], window=WINDOW
        )

        assert [r["eventID"] for r in selected] == [
            inside["eventID"],
            timeless["eventID"],
        ]

    def test_session_token_and_secret_are_dropped(self):
        """AssumeRole credentials keep their key ID and lose the secrets."""
        assumed = record(
            1,
            eventName="AssumeRole",
            responseElements={
                "credentials": {
                    "accessKeyId": "ASIAEXAMPLEDERIVED01",
                    "sessionToken": "FwoGZXIvYXdzEXAMPLETOKEN",
                    "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "expiration": "May 1, 2024 10:00:00 PM",
                }
            },
        )

        [selected] = select_records(_log_file([assumed]), [KEY])

        assert selected["responseElements"]["credentials"] == {
            "accessKeyId": "ASIAEXAMPLEDERIVED01",
            "expiration": "May 1, 2024 10:00:00 PM",
        }

    def test_corrupt_gzip_raises_value_error(self):
        """Bytes with the gzip magic that do not inflate raise ValueError."""
        with pytest.raises(ValueError, match="gzip"):
            select_records(b"\x1f\x8b" + b"garbage", [KEY])


class TestReadTrailFiles:
    def test_invictus_corpus_counts_exactly_the_key_records(self):
        """Every record of the busiest key in the real corpus is read, and no other."""
        expected = 0
        for path in INVICTUS.glob("*.json.gz"):
            for item in json.loads(gzip.decompress(path.read_bytes()))["Records"]:
                if item.get("userIdentity", {}).get("accessKeyId") == INVICTUS_KEY:
                    expected += 1
        coverage = Coverage()

        records = read_trail_files(
            str(INVICTUS), access_key_ids=[INVICTUS_KEY], coverage=coverage
        )

        assert expected == 2104
        assert len(records) == expected
        assert {r["userIdentity"]["accessKeyId"] for r in records} == {INVICTUS_KEY}
        assert coverage.files_read == 55
        assert coverage.files_skipped == 0
        assert coverage.complete is True

    def test_folder_of_mixed_files_read_and_digest_skipped(self, tmp_path):
        """Gzipped, plain, misnamed and nested files are read; a digest is skipped."""
        (tmp_path / "nested" / "deeper").mkdir(parents=True)
        (tmp_path / "a.json.gz").write_bytes(gzip.compress(_log_file([record(1)])))
        (tmp_path / "b.json").write_bytes(_log_file([record(2)]))
        (tmp_path / "nested" / "c.json").write_bytes(
            gzip.compress(_log_file([record(3)]))
        )
        (tmp_path / "nested" / "deeper" / "d.gz").write_bytes(_log_file([record(4)]))
        shutil.copy(DIGEST_FILE, tmp_path / "nested" / "digest.json")
        coverage = Coverage()

        records = read_trail_files(
            str(tmp_path), access_key_ids=[KEY], coverage=coverage
        )

        assert sorted(r["eventID"] for r in records) == [
            record(n)["eventID"] for n in (1, 2, 3, 4)
        ]
        assert coverage.files_read == 4
        assert coverage.files_skipped == 1
        assert coverage.files_failed == {}
        assert coverage.sources == ["file:" + str(tmp_path.resolve())]

    def test_single_file_source(self, tmp_path):
        """A single file path is read on its own."""
        path = tmp_path / "one.json.gz"
        path.write_bytes(
            gzip.compress(_log_file([record(1), record(2, key=OTHER_KEY)]))
        )

        records = read_trail_files(str(path), access_key_ids=[KEY], coverage=Coverage())

        assert [r["eventID"] for r in records] == [record(1)["eventID"]]

    def test_unreadable_file_is_listed_and_others_still_read(self, tmp_path):
        """A corrupt file is recorded as failed with its reason; the rest is read."""
        (tmp_path / "bad.json.gz").write_bytes(b"\x1f\x8bnot really gzip")
        (tmp_path / "good.json").write_bytes(_log_file([record(1)]))
        coverage = Coverage()

        records = read_trail_files(
            str(tmp_path), access_key_ids=[KEY], coverage=coverage
        )

        assert len(records) == 1
        assert list(coverage.files_failed) == [str(tmp_path / "bad.json.gz")]
        assert "gzip" in coverage.files_failed[str(tmp_path / "bad.json.gz")]
        assert coverage.complete is False

    def test_missing_path_is_an_incomplete_source(self, tmp_path):
        """A path that does not exist is reported as a source not read."""
        coverage = Coverage()

        records = read_trail_files(
            str(tmp_path / "nope"), access_key_ids=[KEY], coverage=coverage
        )

        assert records == []
        assert coverage.sources_incomplete == {
            "file:" + str((tmp_path / "nope").resolve()): "no such file or folder"
        }

    def test_stream_of_other_principals_gives_only_ours(self, tmp_path):
        """Among 100,000 records of other principals, exactly our 3 are found."""
        template = '{"eventID":"o%d","eventTime":"2024-05-01T00:00:00Z",' + (
            '"userIdentity":{"accessKeyId":"AKIAOTHER%011d"},"eventName":"GetObject"}'
        )
        others = [template % (n, n) for n in range(100_000)]
        ours = [json.dumps(record(n)) for n in (1, 2, 3)]
        for position, line in zip((10, 50_000, 99_990), ours, strict=True):
            others.insert(position, line)
        body = ('{"Records":[' + ",".join(others) + "]}").encode()
        (tmp_path / "big.json.gz").write_bytes(gzip.compress(body, compresslevel=1))
        coverage = Coverage()

        records = read_trail_files(
            str(tmp_path), access_key_ids=[KEY], coverage=coverage
        )

        assert [r["eventID"] for r in records] == [
            record(n)["eventID"] for n in (1, 2, 3)
        ]
        assert coverage.files_read == 1

    def test_s3_prefix_read_with_digest_skipped(self):
        """Objects under an S3 prefix are read; the digest object is skipped."""
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="trail")
            base = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/"
            s3.put_object(
                Bucket="trail",
                Key=base + "a.json.gz",
                Body=gzip.compress(_log_file([record(1)])),
            )
            s3.put_object(
                Bucket="trail", Key=base + "b.json", Body=_log_file([record(2)])
            )
            s3.put_object(
                Bucket="trail",
                Key="AWSLogs/111122223333/CloudTrail-Digest/us-east-1/d.json.gz",
                Body=gzip.compress(DIGEST_FILE.read_bytes()),
            )
            coverage = Coverage()

            records = read_trail_files(
                "s3://trail/AWSLogs/",
                access_key_ids=[KEY],
                coverage=coverage,
                s3_call=s3_caller(client=s3),
            )

        assert sorted(r["eventID"] for r in records) == [
            record(1)["eventID"],
            record(2)["eventID"],
        ]
        assert coverage.files_read == 2
        assert coverage.files_skipped == 1
        assert coverage.sources == ["s3://trail/AWSLogs/"]

    def test_s3_pages_are_followed(self):
        """Every page of a truncated S3 listing is followed with its token."""
        objects = {"logs/a.json": b"{}", "logs/b.json": _log_file([record(1)])}
        pages = {
            None: {
                "Contents": [{"Key": "logs/"}, {"Key": "logs/a.json"}],
                "IsTruncated": True,
                "NextContinuationToken": "next",
            },
            "next": {"Contents": [{"Key": "logs/b.json"}], "IsTruncated": False},
        }
        calls = []

        def fake_s3(operation, **params):
            calls.append((operation, params))
            if operation == "ListObjectsV2":
                return pages[params.get("ContinuationToken")]
            assert operation == "GetObject"
            return {"Body": io.BytesIO(objects[params["Key"]])}

        coverage = Coverage()

        records = read_trail_files(
            "s3://trail/logs/", access_key_ids=[KEY], coverage=coverage, s3_call=fake_s3
        )

        assert len(records) == 1
        # The whole listing comes first (names only), then each object.
        assert calls == [
            ("ListObjectsV2", {"Bucket": "trail", "Prefix": "logs/"}),
            (
                "ListObjectsV2",
                {"Bucket": "trail", "Prefix": "logs/", "ContinuationToken": "next"},
            ),
            ("GetObject", {"Bucket": "trail", "Key": "logs/a.json"}),
            ("GetObject", {"Bucket": "trail", "Key": "logs/b.json"}),
        ]
        assert coverage.files_skipped == 1
        assert coverage.files_read == 1

    def test_missing_bucket_is_an_incomplete_source(self):
        """An S3 source that cannot be listed is reported with the reason."""
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            coverage = Coverage()

            records = read_trail_files(
                "s3://absent-bucket/AWSLogs/",
                access_key_ids=[KEY],
                coverage=coverage,
                s3_call=s3_caller(client=s3),
            )

        assert records == []
        assert (
            "NoSuchBucket" in coverage.sources_incomplete["s3://absent-bucket/AWSLogs/"]
        )
