"""Where a key's CloudTrail records come from: LookupEvents and trail log files.

Both readers return raw CloudTrail records (dicts shaped like a trail file's
`Records` entries) and write what they could and could not read into one
`Coverage`, so a report never presents a partial read as a complete one.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from responder._time import isoformat_z, parse_timestamp
from responder.aws.session import AwsGateway, map_client_error
from responder.exceptions import AwsCallFailed

__all__ = [
    "LOOKUP_EVENTS_INTERVAL",
    "LOOKUP_EVENTS_SOURCE",
    "Coverage",
    "RegionPacer",
    "Window",
    "enabled_regions",
    "find_minting_record",
    "inflate",
    "minted_key",
    "minted_keys",
    "read_lookup_events",
    "read_trail_files",
    "record_from_lookup_item",
    "s3_caller",
    "scrub_secrets",
    "select_records",
]

log = structlog.get_logger(__name__)

LOOKUP_EVENTS_SOURCE = "cloudtrail:lookup-events"
# CloudTrail allows 2 LookupEvents requests per second per account and region.
LOOKUP_EVENTS_INTERVAL = 0.55
LOOKUP_EVENTS_NOTE = (
    "LookupEvents returns management events only: data events such as S3 object "
    "reads appear only in trail files."
)

_GZIP_MAGIC = b"\x1f\x8b"
_RECORDS_MARKER = b'"Records"'
_ObjectCall = Callable[..., dict[str, Any]]
_SNAKE_S3 = {"ListObjectsV2": "list_objects_v2", "GetObject": "get_object"}
# (file name, its bytes, why it could not be read or None)
_Blob = tuple[str, bytes, str | None]


@dataclass(frozen=True)
class Window:
    """A time range of CloudTrail events; `None` on either side means unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment is not None and moment.tzinfo is None:
                msg = "naive datetime: a report window must be timezone-aware"
                raise ValueError(msg)

    def contains(self, moment: datetime | None) -> bool:
        """Return whether `moment` lies in the window; an unknown time is kept."""
        if moment is None:
            return True
        if self.start is not None and moment < self.start:
            return False

        return self.end is None or moment <= self.end

    def to_dict(self) -> dict[str, str | None]:
        """Return the window as `{"start", "end"}` in ISO 8601 with `Z`, or null."""
        return {
            "start": isoformat_z(self.start) if self.start else None,
            "end": isoformat_z(self.end) if self.end else None,
        }


@dataclass
class Coverage:
    """What the readers could and could not read, for the report's coverage section.

    A region is in `regions_read` only when every key was read to the last page;
    a region or source that failed part-way is in the matching `*_incomplete` map
    with the reason, never silently left out.
    """

    window: Window = field(default_factory=Window)
    sources: list[str] = field(default_factory=list)
    regions_read: list[str] = field(default_factory=list)
    regions_incomplete: dict[str, str] = field(default_factory=dict)
    sources_incomplete: dict[str, str] = field(default_factory=dict)
    files_read: int = 0
    files_skipped: int = 0
    files_failed: dict[str, str] = field(default_factory=dict)
    parse_problems: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Why a bound stopped the reading of derived keys, or `None`.
    truncation: str | None = None

    @property
    def complete(self) -> bool:
        """Return whether everything asked for was read, derived keys included."""
        return not (
            self.regions_incomplete
            or self.sources_incomplete
            or self.files_failed
            or self.truncation
        )

    def add_source(self, source: str) -> None:
        """Record that `source` was used (once)."""
        if source not in self.sources:
            self.sources.append(source)

    def add_note(self, note: str) -> None:
        """Record a caveat for the reader (once)."""
        if note not in self.notes:
            self.notes.append(note)

    def count_problem(self, what: str, count: int = 1) -> None:
        """Count `count` values of field `what` that could not be understood."""
        self.parse_problems[what] = self.parse_problems.get(what, 0) + count

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the report's `coverage` section)."""
        return {
            "complete": self.complete,
            "window": self.window.to_dict(),
            "sources": list(self.sources),
            "regions_read": sorted(self.regions_read),
            "regions_incomplete": dict(sorted(self.regions_incomplete.items())),
            "sources_incomplete": dict(sorted(self.sources_incomplete.items())),
            "files_read": self.files_read,
            "files_skipped": self.files_skipped,
            "files_failed": dict(sorted(self.files_failed.items())),
            "parse_problems": sum(self.parse_problems.values()),
            "parse_problems_by_field": dict(sorted(self.parse_problems.items())),
            "notes": list(self.notes),
        }


class RegionPacer:
    """Spaces the requests sent to each region at least `interval` seconds apart.

    Requests to different regions do not wait for each other. Not thread-safe:
    one pacer serves one reader.
    """

    def __init__(
        self,
        *,
        interval: float = LOOKUP_EVENTS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._last: dict[str, float] = {}

    def wait(self, region: str) -> None:
        """Block until a request may be sent to `region`, then claim that slot."""
        last = self._last.get(region)
        if last is not None:
            delay = last + self.interval - self._clock()
            if delay > 0:
                self._sleep(delay)

        self._last[region] = self._clock()


def enabled_regions(gateway: AwsGateway) -> list[str]:
    """Return the names of the regions enabled in the account, sorted.

    Raises:
        AwsCallFailed: DescribeRegions failed after the gateway's retries.
    """
    response = gateway.call(
        "ec2",
        "DescribeRegions",
        Filters=[
            {"Name": "opt-in-status", "Values": ["opt-in-not-required", "opted-in"]}
        ],
    )
    regions = response.get("Regions") or []

    return sorted(
        str(region["RegionName"])
        for region in regions
        if isinstance(region, dict) and region.get("RegionName")
    )


def read_lookup_events(
    gateway: AwsGateway,
    *,
    access_key_ids: Collection[str],
    regions: Collection[str],
    window: Window,
    coverage: Coverage,
    pacer: RegionPacer | None = None,
) -> list[dict[str, Any]]:
    """Return every LookupEvents record of the keys in every region given.

    Every page of a lookup sends the same `StartTime` and `EndTime`, so pages
    stay consistent while new events arrive. A region that cannot be read to
    the end is recorded in `coverage.regions_incomplete`; the events it gave
    before failing are kept, and other regions are still read.

    Raises:
        ValueError: the window lacks a start or an end.
    """
    if window.start is None or window.end is None:
        msg = "LookupEvents needs a window with both start and end"
        raise ValueError(msg)

    pacer = pacer or RegionPacer()
    coverage.add_source(LOOKUP_EVENTS_SOURCE)
    coverage.add_note(LOOKUP_EVENTS_NOTE)
    records: list[dict[str, Any]] = []

    for region in regions:
        failure: str | None = None
        for access_key_id in access_key_ids:
            try:
                _read_one_lookup(
                    gateway,
                    access_key_id=access_key_id,
                    region=region,
                    window=window,
                    coverage=coverage,
                    pacer=pacer,
                    into=records,
                )
            except AwsCallFailed as exc:
                # Keep reading the other keys: the region is incomplete either way,
                # and what they show is still evidence.
                failure = failure or str(exc)
                log.warning(
                    "lookup_events_region_incomplete",
                    region=region,
                    access_key_id=access_key_id,
                    error_code=exc.error_code,
                    request_id=exc.request_id,
                )

        if failure is None:
            coverage.regions_read.append(region)
        else:
            coverage.regions_incomplete[region] = failure

    return records


def _read_one_lookup(
    gateway: AwsGateway,
    *,
    access_key_id: str,
    region: str,
    window: Window,
    coverage: Coverage,
    pacer: RegionPacer,
    into: list[dict[str, Any]],
) -> None:
    params: dict[str, Any] = {
        "LookupAttributes": [
            {"AttributeKey": "AccessKeyId", "AttributeValue": access_key_id}
        ],
        "StartTime": window.start,
        "EndTime": window.end,
        "MaxResults": 50,
    }
    pages = events = 0

    while True:
        pacer.wait(region)
        response = gateway.call("cloudtrail", "LookupEvents", region=region, **params)
        pages += 1
        for item in response.get("Events") or []:
            record, problem = record_from_lookup_item(
                item, region=region, access_key_id=access_key_id
            )
            if problem is not None:
                coverage.count_problem(problem)
            into.append(record)
            events += 1

        token = response.get("NextToken")
        if not token:
            break
        params["NextToken"] = token

    log.info(
        "lookup_events_read",
        region=region,
        access_key_id=access_key_id,
        events=events,
        pages=pages,
    )


def record_from_lookup_item(
    item: dict[str, Any], *, region: str, access_key_id: str
) -> tuple[dict[str, Any], str | None]:
    """Return the CloudTrail record of one LookupEvents item, and any parse problem.

    The item's `CloudTrailEvent` JSON string is the full record. When it is
    missing or not a JSON object, the record is rebuilt from the item's own
    fields and the second value names the problem (`"CloudTrailEvent"`).
    The queried key, region and the item's `Resources` are kept under
    `responder:` keys, so the record can be shaped without the item.
    """
    raw = item.get("CloudTrailEvent")
    parsed: object = None
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None

    problem: str | None = None
    if isinstance(parsed, dict):
        record: dict[str, Any] = parsed
    else:
        problem = "CloudTrailEvent"
        record = _record_from_item_fields(item)

    record["responder:access_key_id"] = access_key_id
    record["responder:region"] = region
    record["responder:origin"] = LOOKUP_EVENTS_SOURCE
    if "Resources" in item:
        record["responder:lookup_resources"] = item["Resources"]
    if "ReadOnly" in item:
        record.setdefault("readOnly", item["ReadOnly"])

    return scrub_secrets(record), problem


def _record_from_item_fields(item: dict[str, Any]) -> dict[str, Any]:
    moment = parse_timestamp(item.get("EventTime"))
    identity: dict[str, Any] = {}
    if item.get("AccessKeyId") is not None:
        identity["accessKeyId"] = item["AccessKeyId"]
    if item.get("Username") is not None:
        identity["userName"] = item["Username"]

    return {
        "eventID": item.get("EventId"),
        "eventName": item.get("EventName"),
        "eventSource": item.get("EventSource"),
        "eventTime": isoformat_z(moment) if moment else item.get("EventTime"),
        "userIdentity": identity,
        "responder:partial": True,
    }


def scrub_secrets(record: dict[str, Any]) -> dict[str, Any]:
    """Remove session tokens and secret keys a record's response may carry.

    `AssumeRole`, `GetSessionToken` and `GetFederationToken` responses hold
    live credentials; only their key IDs are worth keeping. Mutates and
    returns `record`.
    """
    response = record.get("responseElements")
    if not isinstance(response, dict):
        return record

    for holder_name in ("credentials", "accessKey"):
        holder = response.get(holder_name)
        if isinstance(holder, dict):
            holder.pop("sessionToken", None)
            holder.pop("secretAccessKey", None)

    return record


def read_trail_files(
    source: str,
    *,
    access_key_ids: Collection[str],
    coverage: Coverage,
    window: Window | None = None,
    s3_call: _ObjectCall | None = None,
) -> list[dict[str, Any]]:
    """Return the records of the keys in the CloudTrail log files at `source`.

    `source` is a local file, a local folder (read recursively) or
    `s3://bucket/prefix`; `s3_call(operation, **params)` makes the S3 calls
    (see `s3_caller`). Files that are not `{"Records": [...]}` (digest files,
    anything else) are counted as skipped; files that cannot be read are listed
    in `coverage.files_failed`. Records without a readable `eventTime` are kept
    even when a window is given.
    """
    wanted = frozenset(access_key_ids)
    label = _source_label(source)
    coverage.add_source(label)
    records: list[dict[str, Any]] = []
    files_read = files_skipped = 0
    failed_before = len(coverage.files_failed)

    try:
        for name, data, failure in _iter_blobs(source, s3_call):
            if failure is not None:
                coverage.files_failed[name] = failure
                log.warning("trail_file_unreadable", file=name, reason=failure)
                continue
            try:
                selected = select_records(data, wanted, window=window)
            except ValueError as exc:
                coverage.files_failed[name] = str(exc)
                log.warning("trail_file_unreadable", file=name, reason=str(exc))
                continue
            if selected is None:
                files_skipped += 1
                log.debug("trail_file_skipped", file=name)
                continue
            files_read += 1
            for record in selected:
                record["responder:origin"] = label
                records.append(record)
    except TrailSourceUnreadable as exc:
        coverage.sources_incomplete[label] = str(exc)
        log.warning("trail_source_incomplete", source=label, reason=str(exc))

    coverage.files_read += files_read
    coverage.files_skipped += files_skipped
    log.info(
        "trail_files_read",
        source=label,
        files_read=files_read,
        files_skipped=files_skipped,
        files_failed=len(coverage.files_failed) - failed_before,
        records=len(records),
    )

    return records


# Far above any CloudTrail delivery, far below what a 2-worker laptop can hold.
MAX_INFLATED_BYTES = 512 * 1024 * 1024


def inflate(data: bytes, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """Inflate every gzip member of `data`, refusing more than `limit` bytes out.

    Raises:
        OSError: the output would pass `limit` (a gzip bomb, or a file far larger
            than any CloudTrail delivers).
        EOFError: the file is truncated.
        zlib.error: the data is not valid gzip.
    """
    pieces: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        piece = inflater.decompress(data, limit - size + 1)
        size += len(piece)
        if size > limit:
            msg = f"inflates to more than {limit} bytes; not read"
            raise OSError(msg)
        if not inflater.eof:
            msg = "compressed file ended before the end-of-stream marker"
            raise EOFError(msg)
        pieces.append(piece)
        # Several gzip members make one file; padding after the last is ignored.
        data = inflater.unused_data.lstrip(b"\0")

    return b"".join(pieces)


def select_records(
    data: bytes,
    access_key_ids: Collection[str],
    *,
    window: Window | None = None,
) -> list[dict[str, Any]] | None:
    """Return the records of one log file whose `userIdentity.accessKeyId` is wanted.

    `data` may be gzipped (recognised by its magic bytes, whatever the file is
    called). Returns `None` when the file is not a `{"Records": [...]}` log
    file. Only files whose bytes mention a wanted key are parsed: a key seen in
    another principal's record (in `responseElements`, say) is not selected.

    Raises:
        ValueError: the bytes are not valid gzip or, once a key is seen, not JSON.
    """
    if data[:2] == _GZIP_MAGIC:
        try:
            data = inflate(data)
        except (OSError, EOFError, zlib.error) as exc:
            msg = "not valid gzip: " + str(exc)
            raise ValueError(msg) from None

    if _RECORDS_MARKER not in data:
        return None
    if not any(key.encode() in data for key in access_key_ids):
        return []

    try:
        document = json.loads(data)
    except ValueError as exc:
        msg = "not valid JSON: " + str(exc)
        raise ValueError(msg) from None
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        return None

    wanted = frozenset(access_key_ids)
    selected: list[dict[str, Any]] = []
    for record in document["Records"]:
        if not isinstance(record, dict):
            continue
        identity = record.get("userIdentity")
        if not isinstance(identity, dict) or identity.get("accessKeyId") not in wanted:
            continue
        if window is not None and not window.contains(
            parse_timestamp(record.get("eventTime"))
        ):
            continue
        selected.append(scrub_secrets(record))

    return selected


def find_minting_record(
    source: str, access_key_id: str, *, s3_call: _ObjectCall | None = None
) -> dict[str, Any] | None:
    """Return the record whose response handed out `access_key_id`, or `None`.

    That is the `AssumeRole`, `GetSessionToken` or `GetFederationToken` call
    whose `responseElements.credentials.accessKeyId` is the key: its
    `userIdentity` says who minted the session. Only files whose bytes mention
    the key are parsed; unreadable files are skipped (logged).
    """
    needle = access_key_id.encode()
    try:
        for name, data, failure in _iter_blobs(source, s3_call):
            if failure is not None:
                log.warning("trail_file_unreadable", file=name, reason=failure)
                continue
            if data[:2] == _GZIP_MAGIC:
                try:
                    data = inflate(data)
                except (OSError, EOFError, zlib.error):
                    log.warning("trail_file_unreadable", file=name, reason="gzip")
                    continue
            if needle not in data:
                continue
            for record in _records_of(data):
                if minted_key(record) == access_key_id:
                    return scrub_secrets(record)
    except TrailSourceUnreadable as exc:
        log.warning("trail_source_incomplete", source=source, reason=str(exc))

    return None


def minted_keys(record: dict[str, Any]) -> list[tuple[str, str]]:
    """Return `(key ID, how)` for every key a record's response handed out.

    `how` is the event name: `AssumeRole`, `GetSessionToken`, `GetFederationToken`
    (and the other `AssumeRole*` calls) hand out a temporary key in
    `responseElements.credentials.accessKeyId`; `CreateAccessKey` a long-term one
    in `responseElements.accessKey.accessKeyId`. A failed call hands out nothing.
    """
    if record.get("errorCode"):
        return []
    response = record.get("responseElements")
    if not isinstance(response, dict):
        return []
    how = str(record.get("eventName") or "unknown")
    found: list[tuple[str, str]] = []
    for holder in ("credentials", "accessKey"):
        value = response.get(holder)
        key = value.get("accessKeyId") if isinstance(value, dict) else None
        if isinstance(key, str) and key:
            found.append((key, how))

    return found


def minted_key(record: dict[str, Any]) -> str | None:
    """Return the temporary key ID a record's response handed out, if any."""
    response = record.get("responseElements")
    if not isinstance(response, dict):
        return None
    credentials = response.get("credentials")
    if not isinstance(credentials, dict):
        return None
    key = credentials.get("accessKeyId")

    return key if isinstance(key, str) else None


def _records_of(data: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(data)
    except ValueError:
        return []
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        return []

    return [record for record in records if isinstance(record, dict)]


def _source_label(source: str) -> str:
    if source.startswith("s3://"):
        return source

    return "file:" + str(Path(source).expanduser().resolve())


def _iter_blobs(source: str, s3_call: _ObjectCall | None) -> Iterator[_Blob]:
    if source.startswith("s3://"):
        if s3_call is None:
            msg = "an S3 trail source needs an S3 caller"
            raise ValueError(msg)
        yield from _iter_s3_blobs(source, s3_call)
        return

    root = Path(source).expanduser()
    if root.is_file():
        paths = [root]
    elif root.is_dir():
        paths = sorted(path for path in root.rglob("*") if path.is_file())
    else:
        msg = "no such file or folder"
        raise TrailSourceUnreadable(msg)

    for path in paths:
        try:
            yield str(path), path.read_bytes(), None
        except OSError as exc:
            yield str(path), b"", str(exc)


def _iter_s3_blobs(source: str, s3_call: _ObjectCall) -> Iterator[_Blob]:
    for name in list_s3_trail_objects(source, s3_call):
        try:
            data = fetch_s3_trail_object(name, s3_call)
        except AwsCallFailed as exc:
            yield name, b"", str(exc)
            continue
        yield name, data, None


def s3_caller(
    *, gateway: AwsGateway | None = None, client: Any = None, region: str | None = None
) -> _ObjectCall:
    """Return `call(operation, **params)` for S3 through the gateway or a client.

    Through the gateway, throttling is retried; through a bare client it is not.
    Either way, failures raise `AwsCallFailed` or its subclass for the code.
    """
    if gateway is not None and client is None:

        def via_gateway(operation: str, **params: Any) -> dict[str, Any]:
            return gateway.call("s3", operation, region=region, **params)

        return via_gateway

    if client is None:
        msg = "s3_caller needs a gateway or a client"
        raise ValueError(msg)

    def via_client(operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(client, _SNAKE_S3[operation])
        try:
            response: dict[str, Any] = method(**params)
        except (ClientError, BotoCoreError) as exc:
            raise map_client_error(exc, operation) from exc

        return response

    return via_client


# Public helpers for the streaming reader in `stream` (kept at the end of the file).


class TrailSourceUnreadable(Exception):
    """Raised when a whole trail source cannot be listed (missing folder, S3 error)."""


def trail_source_label(source: str) -> str:
    """Return the name of a trail source in coverage: `s3://...` or `file:<path>`."""
    return _source_label(source)


def list_s3_trail_objects(source: str, s3_call: _ObjectCall) -> list[str]:
    """Return the `s3://bucket/key` names of the objects under an S3 prefix.

    Raises:
        TrailSourceUnreadable: the prefix could not be listed.
    """
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    names: list[str] = []

    while True:
        try:
            page = s3_call("ListObjectsV2", **params)
        except AwsCallFailed as exc:
            raise TrailSourceUnreadable(str(exc)) from exc
        for entry in page.get("Contents") or []:
            key = str(entry.get("Key", ""))
            if key and not key.endswith("/"):
                names.append("s3://" + bucket + "/" + key)
        if not page.get("IsTruncated"):
            break
        params["ContinuationToken"] = page["NextContinuationToken"]

    return names


def fetch_s3_trail_object(name: str, s3_call: _ObjectCall) -> bytes:
    """Return the bytes of the object `s3://bucket/key`.

    Raises:
        AwsCallFailed: GetObject failed.
    """
    bucket, _, key = name.removeprefix("s3://").partition("/")
    body = s3_call("GetObject", Bucket=bucket, Key=key)["Body"]
    data: bytes = body.read()

    return data


__all__ += [
    "TrailSourceUnreadable",
    "fetch_s3_trail_object",
    "list_s3_trail_objects",
    "trail_source_label",
]
