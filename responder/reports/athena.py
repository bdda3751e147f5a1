"""Read a key's CloudTrail records with Athena, for trails that outgrow one machine.

Assumed table: the standard CloudTrail Athena table (columns as in AWS's
`CREATE EXTERNAL TABLE` for CloudTrail). With `partitioned=True` it is also
partitioned by projection as an organisation trail table:

    PARTITIONED BY (account string, region string, `timestamp` string)
    LOCATION 's3://<bucket>/AWSLogs/<organization_id>/'
    storage.location.template =
        's3://<bucket>/AWSLogs/<organization_id>/${account}/CloudTrail/${region}/${timestamp}'
    projection.timestamp.format = 'yyyy/MM/dd'

A single-account table (`organization_id=None`) has no `account` partition:
accounts are then filtered on `recipientaccountid`. Every value written into
SQL is checked against a strict pattern first; nothing else reaches the text.
Session tokens are blanked in the query itself, so they never land in the
query's result file in S3.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog

from responder._time import isoformat_z
from responder.exceptions import ExternalServiceError, ResponderError
from responder.reports.posture import AwsCaller
from responder.reports.sources import minted_keys, scrub_secrets

__all__ = [
    "ATHENA_SOURCE_PREFIX",
    "AthenaQueryFailed",
    "AthenaQueryTimedOut",
    "QueryResults",
    "UnsafeQueryInput",
    "athena_report_records",
    "build_query",
    "run_query",
]

log = structlog.get_logger(__name__)

ATHENA_SOURCE_PREFIX = "athena:"

_TABLE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?$")
_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
_ORGANIZATION = re.compile(r"^o-[a-z0-9]{10,32}$")
# One query names at most this many keys; the IN list stays readable.
_MAX_KEYS_PER_QUERY = 100
_DONE = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# (column alias, SQL expression) of every selected column, in result order.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("eventid", "eventid"),
    ("eventtime", "eventtime"),
    ("eventsource", "eventsource"),
    ("eventname", "eventname"),
    ("awsregion", "awsregion"),
    ("sourceipaddress", "sourceipaddress"),
    ("useragent", "useragent"),
    ("errorcode", "errorcode"),
    ("errormessage", "errormessage"),
    ("readonly", "readonly"),
    ("recipientaccountid", "recipientaccountid"),
    ("requestparameters", "requestparameters"),
    (
        "responseelements",
        # Blank live credentials before Athena writes its result file.
        "regexp_replace(responseelements, "
        '\'"(sessionToken|secretAccessKey)"\\s*:\\s*"[^"]*"\', '
        '\'"$1":"[removed]"\')',
    ),
    ("useridentity_type", "useridentity.type"),
    ("useridentity_principalid", "useridentity.principalid"),
    ("useridentity_arn", "useridentity.arn"),
    ("useridentity_accountid", "useridentity.accountid"),
    ("useridentity_username", "useridentity.username"),
    ("useridentity_accesskeyid", "useridentity.accesskeyid"),
    ("resource_arns", "json_format(CAST(transform(resources, r -> r.arn) AS JSON))"),
    ("resource_types", "json_format(CAST(transform(resources, r -> r.type) AS JSON))"),
)
_RECORD_FIELDS = {
    "eventid": "eventID",
    "eventtime": "eventTime",
    "eventsource": "eventSource",
    "eventname": "eventName",
    "awsregion": "awsRegion",
    "sourceipaddress": "sourceIPAddress",
    "useragent": "userAgent",
    "errorcode": "errorCode",
    "errormessage": "errorMessage",
    "recipientaccountid": "recipientAccountId",
}
_IDENTITY_FIELDS = {
    "useridentity_type": "type",
    "useridentity_principalid": "principalId",
    "useridentity_arn": "arn",
    "useridentity_accountid": "accountId",
    "useridentity_username": "userName",
    "useridentity_accesskeyid": "accessKeyId",
}


class UnsafeQueryInput(ResponderError, ValueError):
    """Raised when a table, key ID, account, region or organisation is malformed."""


class AthenaQueryFailed(ExternalServiceError):
    """Raised when an Athena query ends FAILED or CANCELLED; carries ID and state."""

    def __init__(self, message: str, *, execution_id: str, state: str) -> None:
        self.execution_id = execution_id
        self.state = state
        super().__init__(message)


class AthenaQueryTimedOut(AthenaQueryFailed):
    """Raised when an Athena query is still running after `max_wait` (it is stopped)."""


class QueryResults(Iterator[dict[str, Any]]):
    """The records of one finished Athena query, fetched page by page as iterated.

    `execution_id` names the query; `data_scanned_bytes` is what Athena billed
    for (`None` if it did not say). Iterating may raise `AwsCallFailed` when a
    results page cannot be read. Single pass, not thread-safe.
    """

    def __init__(
        self,
        records: Iterator[dict[str, Any]],
        *,
        execution_id: str,
        data_scanned_bytes: int | None,
    ) -> None:
        self._records = records
        self.execution_id = execution_id
        self.data_scanned_bytes = data_scanned_bytes

    def __next__(self) -> dict[str, Any]:
        """Return the next record."""
        return next(self._records)


def build_query(
    *,
    table: str,
    access_key_ids: list[str],
    start: datetime,
    end: datetime,
    organization_id: str | None,
    accounts: list[str] | None,
    regions: list[str] | None,
    partitioned: bool = True,
) -> str:
    """Return the SQL that selects the keys' records between `start` and `end`.

    The time range is applied to `eventtime` and, when `partitioned`, to the
    `timestamp` partition too, so Athena reads only the days asked for; regions
    and accounts likewise (see the module docstring for the assumed layout).

    Raises:
        UnsafeQueryInput: a value does not match its strict pattern, no key or a
            naive or reversed time range was given.
    """
    _check(_TABLE, [table], "table name")
    _check(_KEY_ID, access_key_ids, "access key ID")
    _check(_ACCOUNT, accounts or [], "account ID")
    _check(_REGION, regions or [], "region")
    _check(_ORGANIZATION, [organization_id] if organization_id else [], "organization")
    if not access_key_ids or len(access_key_ids) > _MAX_KEYS_PER_QUERY:
        msg = f"a query names 1 to {_MAX_KEYS_PER_QUERY} access key IDs"
        raise UnsafeQueryInput(msg)
    if start.tzinfo is None or end.tzinfo is None or end < start:
        msg = "the time range must be timezone-aware with start <= end"
        raise UnsafeQueryInput(msg)

    quoted_table = ".".join(f'"{part}"' for part in table.split("."))
    conditions = [
        f"useridentity.accesskeyid IN ({_in_list(sorted(set(access_key_ids)))})",
        f"eventtime >= '{isoformat_z(start)}'",
        f"eventtime <= '{isoformat_z(end)}'",
    ]
    if partitioned:
        first, last = (_day(moment) for moment in (start, end))
        conditions.append(f"\"timestamp\" BETWEEN '{first}' AND '{last}'")
    if regions:
        column = "region" if partitioned else "awsregion"
        conditions.append(f"{column} IN ({_in_list(sorted(set(regions)))})")
    if accounts:
        column = "account" if partitioned and organization_id else "recipientaccountid"
        conditions.append(f"{column} IN ({_in_list(sorted(set(accounts)))})")

    columns = ",\n  ".join(
        expression if expression == alias else f"{expression} AS {alias}"
        for alias, expression in _COLUMNS
    )
    where = "\n  AND ".join(conditions)

    # Every interpolated value matched a strict pattern above.
    return (
        f"SELECT\n  {columns}\nFROM {quoted_table}\n"
        f"WHERE {where}\nORDER BY eventtime, eventid"
    )


def run_query(
    call: AwsCaller,
    *,
    sql: str,
    workgroup: str,
    output_location: str | None,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = 600.0,
    source: str = ATHENA_SOURCE_PREFIX + "query",
) -> QueryResults:
    """Run `sql` on Athena and return its rows as CloudTrail-shaped records.

    Starts the query, polls every `poll` seconds until it ends (at most
    `max_wait` seconds, then stops it), and returns an iterator that pages
    through the results. Each record has `userIdentity`, parsed
    `requestParameters`/`responseElements`, `resources` and `responder:origin`
    set to `source`; session tokens and secret keys are removed.

    Raises:
        AthenaQueryFailed: the query ended FAILED or CANCELLED.
        AthenaQueryTimedOut: the query did not end within `max_wait`.
        AwsCallFailed: an Athena call failed after the caller's retries.
    """
    params: dict[str, Any] = {
        "QueryString": sql,
        "WorkGroup": workgroup,
        # The same token on a retried start makes Athena run the query once.
        "ClientRequestToken": uuid.uuid4().hex,
    }
    if output_location:
        params["ResultConfiguration"] = {"OutputLocation": output_location}
    execution_id = str(
        call("athena", "StartQueryExecution", **params)["QueryExecutionId"]
    )

    execution = _wait(call, execution_id, poll=poll, sleep=sleep, max_wait=max_wait)
    scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
    log.info(
        "athena_query_finished",
        execution_id=execution_id,
        data_scanned_bytes=scanned,
    )

    return QueryResults(
        _records(call, execution_id, source),
        execution_id=execution_id,
        data_scanned_bytes=int(scanned) if scanned is not None else None,
    )


def athena_report_records(
    call: AwsCaller,
    *,
    table: str,
    seed_key: str,
    start: datetime,
    end: datetime,
    workgroup: str,
    output_location: str | None = None,
    organization_id: str | None = None,
    accounts: list[str] | None = None,
    regions: list[str] | None = None,
    partitioned: bool = True,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = 600.0,
    max_depth: int = 5,
    max_keys: int = _MAX_KEYS_PER_QUERY,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the records of `seed_key` and of the keys it led to, and notes.

    The first query reads the seed key; each later query reads, together, the
    keys minted (`AssumeRole*`, `GetSessionToken`, `GetFederationToken`,
    `CreateAccessKey`) in the previous query's records, up to `max_depth`
    queries and `max_keys` keys in all. Records are deduplicated by `eventID`.
    The notes say which queries ran, what they scanned, and whether a bound
    left minted keys unread (the report's truncation).

    Raises:
        UnsafeQueryInput: as `build_query`.
        AthenaQueryFailed: a query failed or timed out; no partial result.
        AwsCallFailed: an Athena call failed.
    """
    source = ATHENA_SOURCE_PREFIX + table
    records: list[dict[str, Any]] = []
    seen_events: set[str] = set()
    queried: set[str] = set()
    unread: set[str] = set()
    notes: list[str] = []
    pending = [seed_key]

    for depth in range(1, max_depth + 1):
        new = sorted(set(pending) - queried)
        batch = new[: max(0, max_keys - len(queried))]
        unread.update(new[len(batch) :])
        if not batch:
            break
        queried.update(batch)
        sql = build_query(
            table=table,
            access_key_ids=batch,
            start=start,
            end=end,
            organization_id=organization_id,
            accounts=accounts,
            regions=regions,
            partitioned=partitioned,
        )
        results = run_query(
            call,
            sql=sql,
            workgroup=workgroup,
            output_location=output_location,
            poll=poll,
            sleep=sleep,
            max_wait=max_wait,
            source=source,
        )

        pending = []
        count = 0
        for record in results:
            count += 1
            event_id = record.get("eventID")
            if isinstance(event_id, str):
                if event_id in seen_events:
                    continue
                seen_events.add(event_id)
            records.append(record)
            pending.extend(key for key, _how in minted_keys(record))
        notes.append(_query_note(depth, batch, count, results))

    unread.update(set(pending) - queried)
    if unread:
        listed = sorted(unread)
        notes.append(
            f"Athena: {len(listed)} minted key(s) not queried (depth {max_depth} or "
            f"{max_keys} keys reached): {', '.join(listed[:10])}"
        )

    return records, notes


def _check(pattern: re.Pattern[str], values: list[str], what: str) -> None:
    for value in values:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            # The value itself stays out of the message: it may be hostile text.
            msg = f"refused to put a malformed {what} into SQL"
            raise UnsafeQueryInput(msg)


def _in_list(values: list[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y/%m/%d")


def _wait(
    call: AwsCaller,
    execution_id: str,
    *,
    poll: float,
    sleep: Callable[[float], None],
    max_wait: float,
) -> dict[str, Any]:
    """Poll until the query ends; return its `QueryExecution` if it SUCCEEDED."""
    polls = max(1, math.ceil(max_wait / poll)) if poll > 0 else 1
    execution: dict[str, Any] = {}
    for attempt in range(polls + 1):
        answer = call("athena", "GetQueryExecution", QueryExecutionId=execution_id)
        execution = answer.get("QueryExecution", {})
        state = str(execution.get("Status", {}).get("State"))
        if state in _DONE:
            break
        if attempt < polls:
            sleep(poll)
    else:
        call("athena", "StopQueryExecution", QueryExecutionId=execution_id)
        msg = f"Athena query {execution_id} still running after {max_wait}s: stopped"
        raise AthenaQueryTimedOut(msg, execution_id=execution_id, state="TIMEOUT")

    if state != "SUCCEEDED":
        reason = execution.get("Status", {}).get("StateChangeReason") or "no reason"
        msg = f"Athena query {execution_id} ended {state}: {reason}"
        raise AthenaQueryFailed(msg, execution_id=execution_id, state=state)

    return execution


def _records(
    call: AwsCaller, execution_id: str, source: str
) -> Iterator[dict[str, Any]]:
    header: list[str] | None = None
    token: str | None = None
    while True:
        extra = {"NextToken": token} if token else {}
        page = call("athena", "GetQueryResults", QueryExecutionId=execution_id, **extra)
        rows = page.get("ResultSet", {}).get("Rows", [])
        for row in rows:
            values = [cell.get("VarCharValue") for cell in row.get("Data", [])]
            if header is None:
                # The first row of the first page names the columns.
                header = [str(value) for value in values]
                continue
            yield _record_from_row(dict(zip(header, values, strict=False)), source)
        token = page.get("NextToken")
        if not token:
            return


def _record_from_row(row: dict[str, str | None], source: str) -> dict[str, Any]:
    """Rebuild a CloudTrail record from one result row (NULL cells are absent)."""
    record: dict[str, Any] = {
        field: row[alias]
        for alias, field in _RECORD_FIELDS.items()
        if row.get(alias) is not None
    }
    record["userIdentity"] = {
        field: row[alias]
        for alias, field in _IDENTITY_FIELDS.items()
        if row.get(alias) is not None
    }
    if row.get("readonly") in ("true", "false"):
        record["readOnly"] = row["readonly"] == "true"
    for alias, field in (
        ("requestparameters", "requestParameters"),
        ("responseelements", "responseElements"),
    ):
        record[field] = _json(row.get(alias))
    arns = _json(row.get("resource_arns"))
    types = _json(row.get("resource_types"))
    if isinstance(arns, list):
        kinds = types if isinstance(types, list) and len(types) == len(arns) else []
        record["resources"] = [
            {"ARN": arn, "type": kinds[index] if kinds else None}
            for index, arn in enumerate(arns)
        ]
    record["responder:origin"] = source

    return scrub_secrets(record)


def _json(text: str | None) -> Any:
    """Parse a JSON text column; text that is not JSON is kept as it is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _query_note(depth: int, batch: list[str], count: int, results: QueryResults) -> str:
    scanned = results.data_scanned_bytes
    size = f"{scanned} bytes scanned" if scanned is not None else "scan size unknown"

    return (
        f"Athena query {results.execution_id} (depth {depth}, keys "
        f"{', '.join(batch)}): {count} records, {size}"
    )
