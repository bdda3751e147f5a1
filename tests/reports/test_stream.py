"""Tests for the streaming trail reader: derived keys, byte search, coverage."""

from __future__ import annotations

import gzip
import inspect
import json

import boto3
import pytest
from botocore.stub import Stubber
from ctfakes import DIGEST_FILE, END, KEY, OTHER_KEY, START, lookup_item, record
from ctfakes import lookup_params as _lookup_params

from responder.reports.service import collect_events
from responder.reports.sources import Coverage, inflate, s3_caller
from responder.reports.stream import TrailStream

SESSION = "ASIAEXAMPLESESSION01"
CHAINED = "ASIAEXAMPLECHAINED01"
BACKDOOR = "AKIAEXAMPLEBACKDOOR1"


def _log(records, *, indent=None):
    text = json.dumps({"Records": records}, indent=indent)
    if indent is None:
        text = text.replace(", ", ",").replace(": ", ":")
    return gzip.compress(text.encode())


def _minting(number, *, by, minted, how="AssumeRole", **extra):
    holder = "accessKey" if how == "CreateAccessKey" else "credentials"
    response = {
        holder: {
            "accessKeyId": minted,
            "sessionToken": "secret-session-token",
            "secretAccessKey": "secret-access-key",
        }
    }
    return record(number, key=by, event_name=how, responseElements=response, **extra)


def _read(source, keys=(KEY,), **options):
    coverage = Coverage()
    stream = TrailStream(
        str(source), access_key_ids=list(keys), coverage=coverage, **options
    )
    records = list(stream)
    return records, stream, coverage


def _event_ids(records):
    return sorted(r["eventID"] for r in records)


class TestTrailStream:
    def test_read_folder_returns_key_and_derived_records_only(self, tmp_path):
        """Only records made by the key and keys it minted come back."""
        mint = _minting(1, by=KEY, minted=SESSION)
        ours = [record(2), record(3, key=SESSION), mint]
        others = [record(n, key=OTHER_KEY) for n in range(10, 20)]
        (tmp_path / "a.json.gz").write_bytes(_log(others[:5] + ours[:1]))
        (tmp_path / "b.json.gz").write_bytes(_log([mint, *others[5:], *ours[1:2]]))

        records, stream, coverage = _read(tmp_path)

        assert _event_ids(records) == _event_ids(ours)
        assert set(stream.keys) == {KEY, SESSION}
        assert stream.keys[SESSION].parent == KEY
        assert stream.keys[SESSION].obtained_by == "AssumeRole"
        assert stream.keys[SESSION].depth == 1
        assert coverage.files_read == 2
        assert coverage.complete is True

    def test_key_minted_in_last_file_caught_in_earlier_file(self, tmp_path):
        """A key whose minting is read after its events still has them all."""
        early = [record(1, key=CHAINED), record(2, key=OTHER_KEY)]
        (tmp_path / "a.json.gz").write_bytes(_log(early))
        (tmp_path / "b.json.gz").write_bytes(_log([record(3, key=SESSION)]))
        (tmp_path / "c.json.gz").write_bytes(
            _log([_minting(4, by=SESSION, minted=CHAINED)])
        )
        (tmp_path / "d.json.gz").write_bytes(
            _log([_minting(5, by=KEY, minted=SESSION)])
        )

        records, stream, _ = _read(tmp_path)

        assert _event_ids(records) == _event_ids(
            [early[0], record(3), record(4), record(5)]
        )
        assert stream.keys[CHAINED].depth == 2
        assert stream.stats.files_rescanned >= 2

    def test_pretty_printed_file_read(self, tmp_path):
        """A pretty-printed log file gives the same records as a compact one."""
        records_in = [record(1), record(2, key=OTHER_KEY), record(3)]
        (tmp_path / "pretty.json.gz").write_bytes(_log(records_in, indent=4))

        records, stream, _ = _read(tmp_path)

        assert _event_ids(records) == _event_ids([records_in[0], records_in[2]])
        assert stream.stats.files_parsed_whole == 1

    def test_digest_file_skipped_and_counted(self, tmp_path):
        """A digest file is skipped, counted, and does not fail the read."""
        (tmp_path / "digest.json").write_bytes(DIGEST_FILE.read_bytes())
        (tmp_path / "log.json").write_bytes(gzip.decompress(_log([record(1)])))

        records, _, coverage = _read(tmp_path)

        assert len(records) == 1
        assert coverage.files_skipped == 1
        assert coverage.files_read == 1
        assert coverage.complete is True

    def test_key_in_other_principals_response_is_not_an_event(self, tmp_path):
        """Another principal's record naming the key is dropped; our minting kept."""
        admin_made_key = _minting(1, by=OTHER_KEY, minted=KEY, how="CreateAccessKey")
        listing = record(
            2,
            key=OTHER_KEY,
            responseElements={"accessKeyMetadata": [{"accessKeyId": KEY}]},
        )
        backdoor = _minting(3, by=KEY, minted=BACKDOOR, how="CreateAccessKey")
        (tmp_path / "a.json.gz").write_bytes(_log([admin_made_key, listing, backdoor]))

        records, stream, _ = _read(tmp_path)

        assert _event_ids(records) == [backdoor["eventID"]]
        assert stream.keys[BACKDOOR].obtained_by == "CreateAccessKey"
        kept = records[0]["responseElements"]["accessKey"]
        assert "secretAccessKey" not in kept
        assert "sessionToken" not in kept

    def test_three_records_among_a_hundred_thousand(self, tmp_path):
        """Three of ours among 100,000 other records come back, and nothing else."""
        ours = {40_000: record(1), 70_001: record(2), 99_999: record(3)}
        for part in range(4):
            batch = [
                ours.get(n) or record(n, key=OTHER_KEY)
                for n in range(part * 25_000, (part + 1) * 25_000)
            ]
            (tmp_path / f"{part}.json.gz").write_bytes(_log(batch))

        records, stream, _ = _read(tmp_path)

        assert _event_ids(records) == _event_ids(ours.values())
        assert stream.stats.records_parsed == 3
        assert stream.stats.files_parsed == 3

    def test_files_without_hits_are_never_parsed(self, tmp_path):
        """Reading streams: files naming no key of interest are searched, not parsed."""
        for number in range(20):
            batch = [
                record(n, key=OTHER_KEY) for n in range(number * 50, number * 50 + 50)
            ]
            if number == 7:
                batch.append(record(9999))
            (tmp_path / f"{number:02d}.json.gz").write_bytes(_log(batch))
        stream = TrailStream(str(tmp_path), access_key_ids=[KEY], coverage=Coverage())

        iterator = iter(stream)
        records = list(iterator)

        assert inspect.isgenerator(iterator)
        assert len(records) == 1
        assert stream.stats.files_searched == 20
        assert stream.stats.files_parsed == 1
        assert stream.stats.records_parsed == 1

    def test_two_processes_give_the_same_records(self, tmp_path):
        """Reading with two worker processes gives what one process gives."""
        for number in range(12):
            batch = [record(number * 10 + n, key=OTHER_KEY) for n in range(5)]
            batch.append(record(500 + number, key=SESSION if number < 6 else KEY))
            if number == 11:
                batch.append(_minting(999, by=KEY, minted=SESSION))
            (tmp_path / f"{number:02d}.json.gz").write_bytes(_log(batch))

        one, _, _ = _read(tmp_path, workers=1)
        two, stream, _ = _read(tmp_path, workers=2)

        assert _event_ids(two) == _event_ids(one)
        assert len(two) == 13
        assert set(stream.keys) == {KEY, SESSION}

    def test_depth_limit_truncates_and_says_so(self, tmp_path):
        """Keys beyond the depth limit are not followed, and coverage says so."""
        (tmp_path / "a.json.gz").write_bytes(
            _log(
                [
                    _minting(1, by=KEY, minted=SESSION),
                    _minting(2, by=SESSION, minted=CHAINED),
                    record(3, key=CHAINED),
                ]
            )
        )

        records, stream, coverage = _read(tmp_path, max_depth=1)

        assert CHAINED not in stream.keys
        assert len(records) == 2
        assert stream.stats.truncated is True
        assert any("deeper than 1" in note for note in coverage.notes)

    def test_corrupt_file_listed_and_others_read(self, tmp_path):
        """A corrupt gzip file is a failed file; the others are still read."""
        (tmp_path / "a.json.gz").write_bytes(b"\x1f\x8bnot gzip")
        (tmp_path / "b.json.gz").write_bytes(_log([record(1)]))

        records, _, coverage = _read(tmp_path)

        assert len(records) == 1
        assert list(coverage.files_failed) == [str(tmp_path / "a.json.gz")]
        assert coverage.complete is False

    def test_s3_prefix_read_through_moto(self, aws):
        """An `s3://` source is listed and read, derived keys included."""
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="trail")
        prefix = "AWSLogs/1/CloudTrail/us-east-1/2024/05/01/"
        s3.put_object(
            Bucket="trail",
            Key=prefix + "1_CloudTrail_us-east-1_20240501T1000Z_a.json.gz",
            Body=_log([record(1, key=SESSION), record(2, key=OTHER_KEY)]),
        )
        s3.put_object(
            Bucket="trail",
            Key=prefix + "1_CloudTrail_us-east-1_20240501T1005Z_b.json.gz",
            Body=_log([_minting(3, by=KEY, minted=SESSION)]),
        )
        s3.put_object(
            Bucket="trail", Key="AWSLogs/1/digest.json", Body=DIGEST_FILE.read_bytes()
        )

        records, stream, coverage = _read(
            "s3://trail/AWSLogs/", s3_call=s3_caller(client=s3)
        )

        assert len(records) == 2
        assert SESSION in stream.keys
        assert coverage.sources == ["s3://trail/AWSLogs/"]
        assert coverage.files_skipped == 1
        assert coverage.files_read == 2


class TestCollectEventsDerived:
    def test_lookup_queries_keys_minted_by_the_seed(self, gateway, clock):
        """A session the seed key minted is looked up too, and noted in coverage."""
        mint = _minting(1, by=KEY, minted=SESSION)
        used = record(2, key=SESSION)
        east = gateway.client("cloudtrail", "us-east-1")
        with Stubber(east) as stubber:
            stubber.add_response(
                "lookup_events", {"Events": [lookup_item(mint)]}, _lookup_params()
            )
            stubber.add_response(
                "lookup_events",
                {"Events": [lookup_item(used, AccessKeyId=SESSION)]},
                _lookup_params(SESSION),
            )

            records, coverage = collect_events(
                gateway,
                access_key_ids=[KEY],
                start=START,
                end=END,
                regions=["us-east-1"],
                clock=clock,
                sleep=clock.sleep,
            )

            stubber.assert_no_pending_responses()

        assert _event_ids(records) == _event_ids([mint, used])
        assert coverage.regions_read == ["us-east-1"]
        assert any(SESSION in note and "AssumeRole" in note for note in coverage.notes)


class TestInflate:
    def test_inflate_refuses_output_over_the_limit(self):
        """A gzip bomb stops at the limit instead of filling memory."""
        bomb = gzip.compress(b"\0" * 100_000)

        with pytest.raises(OSError, match="more than 1000 bytes"):
            inflate(bomb, limit=1000)

    def test_inflate_reads_every_member_and_refuses_truncation(self):
        """Concatenated members are one file; a cut-off file is an error."""
        two = gzip.compress(b'{"Records":[') + gzip.compress(b"]}")

        assert inflate(two) == b'{"Records":[]}'
        with pytest.raises(EOFError):
            inflate(gzip.compress(b"x" * 1000)[:-12])


def _raw(key: str, name: str, event_id: str, **extra: object) -> dict[str, object]:
    return {
        "eventVersion": "1.08",
        "eventTime": "2024-05-01T10:00:00Z",
        "eventSource": "sts.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "userIdentity": {"type": "IAMUser", "accessKeyId": key},
        **extra,
    }


class TestHostileTrails:
    """Cases a break test found in the report pipeline."""

    def test_key_minted_by_any_call_keeps_its_events(self, tmp_path):
        """AssumeRoot hands out a key: its events stay in the report, chained."""
        from responder.reports import offline_report

        root_session = "ASIA" + "R" * 16
        records = [
            _raw(
                KEY,
                "AssumeRoot",
                "e-1",
                responseElements={"credentials": {"accessKeyId": root_session}},
            ),
            _raw(root_session, "StopLogging", "e-2"),
        ]
        (tmp_path / "a.json").write_text(json.dumps({"Records": records}))

        report = offline_report(access_key_id=KEY, path=str(tmp_path))

        assert [k["access_key_id"] for k in report["derived_keys"]] == [root_session]
        assert report["derived_keys"][0]["obtained_by"] == "AssumeRoot"
        assert [e["chain"] for e in report["events"]] == [
            [KEY],
            [KEY, root_session],
        ]

    def test_deeply_nested_file_fails_alone(self, tmp_path):
        """A file nested too deeply is listed as failed; the others are read."""
        from responder.reports import offline_report

        good = {"Records": [_raw(KEY, "GetCallerIdentity", "e-1")]}
        (tmp_path / "good.json").write_text(json.dumps(good))
        deep = (
            '{"Records":[{"eventVersion":"1.08","userIdentity":{"accessKeyId":"'
            + KEY
            + '"},"requestParameters":'
            + "[" * 100_000
            + "]" * 100_000
            + "}]}"
        )
        (tmp_path / "deep.json").write_text(deep)

        report = offline_report(access_key_id=KEY, path=str(tmp_path))

        assert report["summary"]["events"] == 1
        assert list(report["coverage"]["files_failed"]) == [str(tmp_path / "deep.json")]
        assert report["coverage"]["complete"] is False

    def test_truncated_derivation_makes_coverage_incomplete(self, tmp_path):
        """Hitting the derived-key bound says the report is not complete."""
        from responder.reports import offline_report

        records = [
            _raw(
                KEY,
                "GetSessionToken",
                f"e-{n}",
                responseElements={"credentials": {"accessKeyId": f"ASIA{n:016d}"}},
            )
            for n in range(502)
        ]
        (tmp_path / "a.json").write_text(json.dumps({"Records": records}))

        report = offline_report(access_key_id=KEY, path=str(tmp_path))

        assert report["coverage"]["truncated"] is True
        assert report["coverage"]["complete"] is False
        assert len(report["derived_keys"]) == 500
