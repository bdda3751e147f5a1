"""Report services: gather a key's events from every source, or build one offline."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

import boto3
import structlog

from responder._time import Clock, utcnow
from responder.aws.session import AwsGateway
from responder.exceptions import AwsCallFailed
from responder.reports.build import build_report, key_type_of
from responder.reports.sources import (
    LOOKUP_EVENTS_INTERVAL,
    Coverage,
    RegionPacer,
    Window,
    enabled_regions,
    minted_keys,
    read_lookup_events,
    s3_caller,
)
from responder.reports.stream import (
    MAX_DERIVED_DEPTH,
    MAX_KEYS,
    TrailStream,
    default_workers,
)

__all__ = ["collect_events", "merge_records", "offline_report"]

log = structlog.get_logger(__name__)

# LookupEvents keeps 90 days of events; older parts of a window are only in trails.
_LOOKUP_RETENTION = timedelta(days=90)


def collect_events(
    gateway: AwsGateway,
    *,
    access_key_ids: Collection[str],
    start: datetime,
    end: datetime,
    regions: Collection[str] | None = None,
    trail_source: str | None = None,
    s3_client: Any = None,
    interval: float = LOOKUP_EVENTS_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[dict[str, Any]], Coverage]:
    """Return the keys' records from LookupEvents and trail files, deduplicated.

    `regions=None` reads every enabled region; an empty list skips LookupEvents.
    Keys the given keys handed out (sessions, role sessions, new access keys,
    transitively, up to `MAX_DERIVED_DEPTH` deep and `MAX_KEYS` in all) are
    looked up too, and named in the coverage notes. `trail_source` (a local
    path or `s3://bucket/prefix`) adds data events and the records of every
    key derived there; its S3 calls go through `s3_client` when given, else
    through the gateway. An event both sources return is kept once. What could
    not be read is in the returned `Coverage`; this function does not raise for
    AWS failures.
    """
    window = Window(start, end)
    coverage = Coverage(window=window)
    pacer = RegionPacer(interval=interval, clock=clock, sleep=sleep)

    if regions is None:
        try:
            regions = enabled_regions(gateway)
        except AwsCallFailed as exc:
            # Without the region list, read the home region and say so.
            coverage.regions_incomplete["(enabled regions)"] = str(exc)
            regions = [gateway.region]
    if regions and end - start > _LOOKUP_RETENTION:
        coverage.add_note(
            "LookupEvents keeps 90 days: older events are only in trail files."
        )

    records: list[dict[str, Any]] = []
    depths = dict.fromkeys(access_key_ids, 0)
    if regions:
        records += _lookup_with_derived(
            gateway,
            depths=depths,
            regions=regions,
            window=window,
            coverage=coverage,
            pacer=pacer,
        )
    if trail_source is not None:
        s3_call = (
            s3_caller(client=s3_client)
            if s3_client is not None
            else s3_caller(gateway=gateway)
        )
        # One process: this runs inside the service, next to its threads.
        records += TrailStream(
            trail_source,
            access_key_ids=list(depths),
            coverage=coverage,
            window=window,
            s3_call=s3_call,
            workers=1,
        )

    merged = merge_records(records)
    log.info(
        "report_events_collected",
        access_key_ids=sorted(access_key_ids),
        records=len(merged),
        duplicates=len(records) - len(merged),
        regions_incomplete=sorted(coverage.regions_incomplete),
    )

    return merged, coverage


def _lookup_with_derived(
    gateway: AwsGateway,
    *,
    depths: dict[str, int],
    regions: Collection[str],
    window: Window,
    coverage: Coverage,
    pacer: RegionPacer,
) -> list[dict[str, Any]]:
    """Look up the keys in `depths`, then every key their records handed out.

    `depths` maps each key to its distance from a seed; keys found are added
    to it. A region is read only if it was read for every key.
    """
    records: list[dict[str, Any]] = []
    batch = list(depths)

    while batch:
        found = read_lookup_events(
            gateway,
            access_key_ids=batch,
            regions=regions,
            window=window,
            coverage=coverage,
            pacer=pacer,
        )
        records += found
        batch = _derived_keys(found, depths, coverage)

    # Each round lists the regions it read; keep one entry per region.
    read = dict.fromkeys(coverage.regions_read)
    coverage.regions_read[:] = [
        region for region in read if region not in coverage.regions_incomplete
    ]

    return records


def _derived_keys(
    records: list[dict[str, Any]], depths: dict[str, int], coverage: Coverage
) -> list[str]:
    """Return the new keys that records of known keys handed out; note them."""
    new: list[str] = []
    for record in records:
        identity = record.get("userIdentity")
        caller = identity.get("accessKeyId") if isinstance(identity, dict) else None
        if caller not in depths:
            continue
        for key, how in minted_keys(record):
            if key in depths:
                continue
            if depths[caller] >= MAX_DERIVED_DEPTH or len(depths) >= MAX_KEYS:
                coverage.add_note(
                    "Derived keys: the depth or count limit was reached; "
                    "some keys handed out were not looked up."
                )
                continue
            depths[key] = depths[caller] + 1
            new.append(key)
            coverage.add_note(
                f"LookupEvents: also read {key}, obtained by {how} with {caller}."
            )
            log.info("derived_key_looked_up", access_key_id=key, parent=caller, how=how)

    return new


def merge_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `records` with duplicates of one event kept once, in first-seen order.

    Two records are the same event when `eventID`, `eventTime` and `eventName`
    agree (CloudTrail may deliver an event twice, and LookupEvents and trail
    files overlap). The kept record lists every origin in `responder:origins`
    and is the fully parsed one where the other was rebuilt from a lookup item.
    """
    kept: dict[tuple[str, str, str], dict[str, Any]] = {}
    merged: list[dict[str, Any]] = []

    for record in records:
        key = _identity(record)
        if key is None:
            merged.append(record)
            continue
        first = kept.get(key)
        if first is None:
            kept[key] = record
            merged.append(record)
            continue
        origins = _origins(first) + [
            origin for origin in _origins(record) if origin not in _origins(first)
        ]
        if first.get("responder:partial") and not record.get("responder:partial"):
            # Keep the full record, in the first one's place.
            for name in ("responder:lookup_resources", "responder:access_key_id"):
                if name in first:
                    record.setdefault(name, first[name])
            first.clear()
            first.update(record)
        first["responder:origins"] = origins

    return merged


def offline_report(
    *,
    access_key_id: str,
    path: str,
    s3_client: Any = None,
    start: datetime | None = None,
    end: datetime | None = None,
    clock: Clock = utcnow,
    workers: int | None = None,
) -> dict[str, Any]:
    """Return the report of one key read from trail files alone (no LookupEvents).

    `path` is a local file or folder, or `s3://bucket/prefix` read with
    `s3_client` (a default boto3 S3 client when `None`). The events are those
    of the key and of every key derived from it in the files (see
    `TrailStream`), read with `workers` processes (`None`: up to 2, by CPU
    count). Owner and account are the ones most records of the key itself
    name. The responder took no action, so `responder_actions` is empty.
    """
    window = Window(start, end)
    coverage = Coverage(window=window)
    s3_call = None
    if path.startswith("s3://"):
        s3_call = s3_caller(client=s3_client or boto3.client("s3"))

    stream = TrailStream(
        path,
        access_key_ids=[access_key_id],
        coverage=coverage,
        window=window,
        s3_call=s3_call,
        workers=default_workers() if workers is None else workers,
    )
    records = merge_records(stream)
    own = [record for record in records if _caller(record) == access_key_id]
    owner, account_id = _most_common(own, "userName"), _most_common(own, "accountId")
    del own

    return build_report(
        access_key_id=access_key_id,
        owner=owner,
        account_id=account_id,
        key_type=key_type_of(access_key_id),
        window=window,
        events=records,
        coverage=coverage,
        responder_actions=[],
        generated_at=clock(),
        consume=True,
    )


def _identity(record: dict[str, Any]) -> tuple[str, str, str] | None:
    parts = (record.get("eventID"), record.get("eventTime"), record.get("eventName"))
    if not all(isinstance(part, str) and part for part in parts):
        return None

    return (str(parts[0]), str(parts[1]), str(parts[2]))


def _origins(record: dict[str, Any]) -> list[str]:
    origins = record.get("responder:origins")
    if isinstance(origins, list):
        return [str(origin) for origin in origins]
    origin = record.get("responder:origin")

    return [origin] if isinstance(origin, str) else []


def _caller(record: dict[str, Any]) -> object:
    identity = record.get("userIdentity")

    return identity.get("accessKeyId") if isinstance(identity, dict) else None


def _most_common(records: list[dict[str, Any]], field: str) -> str | None:
    tally: Counter[str] = Counter()
    for record in records:
        identity = record.get("userIdentity")
        value = identity.get(field) if isinstance(identity, dict) else None
        if isinstance(value, str) and value:
            tally[value] += 1

    return tally.most_common(1)[0][0] if tally else None
