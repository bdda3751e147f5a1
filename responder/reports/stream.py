"""Read a key's records, and those of every key derived from it, from trail files.

The reader never parses a whole trail. Each file is inflated and searched as
bytes for the `"accessKeyId":"` field; only the records around a value of a
key of interest are cut out and parsed, and a record is kept only when its
`userIdentity.accessKeyId` is such a key (a key seen in another principal's
`responseElements` does not make that record ours). Memory grows with the
records kept, not with the trail.

A kept record whose response hands out a key (`AssumeRole`, `GetSessionToken`,
`GetFederationToken`, `CreateAccessKey`...) adds that key to the keys of
interest, up to a depth and a count. Files are read in name order, so a key
minted in us-east-1 may be used in a file of another region read before it.
Instead of reading such files again blindly, the reader keeps, for every file,
the compact set of key IDs its records name (20 bytes each); once no new key
appears, it reads again only the files whose set holds a key they were not
searched for, and repeats until nothing new is found.

Files that do not fit the fast path (pretty-printed, records of unusual shape)
are parsed whole, but only when their bytes name a key of interest.
"""

from __future__ import annotations

import gc
import json
import os
import re
import threading
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from responder._time import parse_timestamp
from responder.exceptions import AwsCallFailed
from responder.reports.sources import (
    Coverage,
    TrailSourceUnreadable,
    Window,
    fetch_s3_trail_object,
    inflate,
    list_s3_trail_objects,
    minted_keys,
    scrub_secrets,
    trail_source_label,
)

__all__ = [
    "MAX_DERIVED_DEPTH",
    "MAX_KEYS",
    "KeyOrigin",
    "StreamStats",
    "TrailStream",
    "default_workers",
]

log = structlog.get_logger(__name__)

MAX_DERIVED_DEPTH = 5
MAX_KEYS = 500

# Below this many files, starting worker processes costs more than it saves.
_POOL_MIN_FILES = 8
_GZIP_MAGIC = b"\x1f\x8b"
_RECORDS = b'"Records"'
_RECORDS_OPEN = b'{"Records":['
_FIELD = b'"accessKeyId"'
_COMPACT_FIELD = b'"accessKeyId":"'
# Key IDs are 16 to 128 characters; real ones have 20. The per-file index keeps
# the first 20 bytes, so a longer key can only be over-matched, never missed.
_PREFIX = 20
_ANY_FIELD = re.compile(rb'"accessKeyId"\s*:\s*"([^"\\]{1,128})"')
# `<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<unique>.json.gz`
_FILE_TIME = re.compile(r"_CloudTrail_[^_]+_(\d{8}T\d{4}Z)_")
_ObjectCall = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class KeyOrigin:
    """How a key of interest came to be one: a seed, or minted by another key.

    `parent`, `obtained_by` and `event_id` are `None` for a seed; `depth` is 0
    for a seed and one more than the parent's otherwise.
    """

    access_key_id: str
    depth: int = 0
    parent: str | None = None
    obtained_by: str | None = None
    event_id: str | None = None
    event_time: str | None = None


@dataclass
class StreamStats:
    """What one read cost: files searched, parsed, read again, records parsed.

    `files_parsed` counts files with at least one candidate record (records cut
    out and parsed); `files_parsed_whole` those that had to be parsed entirely.
    A file without a key of interest is never parsed.
    """

    files_searched: int = 0
    files_parsed: int = 0
    files_parsed_whole: int = 0
    files_rescanned: int = 0
    records_parsed: int = 0
    records_kept: int = 0
    truncated: bool = False
    truncation_note: str | None = None


class _Task(NamedTuple):
    number: int
    name: str
    path: str | None
    data: bytes | None
    wanted: tuple[str, ...]
    whole: bool


class _Scanned(NamedTuple):
    number: int
    status: str  # "read", "skipped" or "failed"
    reason: str | None
    key_index: bytes
    chunk: bytes
    whole: bool


@dataclass
class _FileState:
    name: str
    path: str | None
    index: bytes
    searched: frozenset[str]


@dataclass
class TrailStream:
    """The records of some keys, and of the keys derived from them, in a trail source.

    `source` is a local file, a local folder (read recursively, in name order)
    or `s3://bucket/prefix` read with `s3_call(operation, **params)` (see
    `sources.s3_caller`). Iterating yields raw, secret-scrubbed CloudTrail
    records whose `userIdentity.accessKeyId` is a key of interest; each carries
    `responder:origin`. Iterate once: `keys` (seeds and derived keys), `stats`
    and `coverage` are complete when the iteration ends.

    `workers` > 1 inflates and searches files in that many processes (forked,
    or from a fork server when other threads run); the result does not
    depend on it. Records without a readable `eventTime`
    are kept even when a window is given; keys are derived from minting records
    outside the window too. Not thread-safe.
    """

    source: str
    access_key_ids: Collection[str]
    coverage: Coverage
    window: Window | None = None
    s3_call: _ObjectCall | None = None
    workers: int = 1
    max_depth: int = MAX_DERIVED_DEPTH
    max_keys: int = MAX_KEYS
    keys: dict[str, KeyOrigin] = field(default_factory=dict)
    stats: StreamStats = field(default_factory=StreamStats)

    def __post_init__(self) -> None:
        if self.source.startswith("s3://") and self.s3_call is None:
            msg = "an S3 trail source needs an S3 caller"
            raise ValueError(msg)
        for key in self.access_key_ids:
            self.keys[key] = KeyOrigin(access_key_id=key)
        self._files: dict[int, _FileState] = {}
        self._read: set[int] = set()
        self._label = trail_source_label(self.source)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield the records of every key of interest, file by file."""
        self.coverage.add_source(self._label)
        try:
            names = self._list()
        except TrailSourceUnreadable as exc:
            self.coverage.sources_incomplete[self._label] = str(exc)
            log.warning("trail_source_incomplete", source=self._label, reason=str(exc))
            names = []

        executor: Executor | None = None
        if self.workers > 1 and len(names) >= _POOL_MIN_FILES:
            # Forking a process that runs other threads can copy a held lock;
            # then a fork server starts the workers instead.
            method = "fork" if threading.active_count() == 1 else "forkserver"
            executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context(method)
            )
        try:
            yield from self._run(self._first_tasks(names), executor)
            yield from self._later_passes(executor)
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

        self._record_coverage()

    def _list(self) -> list[str]:
        if self.source.startswith("s3://"):
            assert self.s3_call is not None  # checked in __post_init__
            names = list_s3_trail_objects(self.source, self.s3_call)
        else:
            names = [str(path) for path in _local_files(self.source)]

        return sorted(names, key=_delivery_order)

    def _later_passes(self, executor: Executor | None) -> Iterator[dict[str, Any]]:
        while True:
            tasks = list(self._rescan_tasks())
            if not tasks:
                return
            self.stats.files_rescanned += len(tasks)
            log.debug("trail_files_rescanned", files=len(tasks), keys=len(self.keys))
            yield from self._run(iter(tasks), executor)

    def _first_tasks(self, names: list[str]) -> Iterator[_Task]:
        for number, name in enumerate(names):
            if self.s3_call is None or not name.startswith("s3://"):
                yield self._task(number, name, name, None)
                continue
            try:
                data = fetch_s3_trail_object(name, self.s3_call)
            except AwsCallFailed as exc:
                self._fail(name, str(exc))
                continue
            yield self._task(number, name, None, data)

    def _task(
        self, number: int, name: str, path: str | None, data: bytes | None
    ) -> _Task:
        wanted = frozenset(self.keys)
        self._files[number] = _FileState(name, path, b"", wanted)

        return _Task(number, name, path, data, tuple(sorted(wanted)), whole=False)

    def _rescan_tasks(self) -> Iterator[_Task]:
        for number, state in sorted(self._files.items()):
            missing = [
                key
                for key in self.keys
                if key not in state.searched and _indexed(state.index, key)
            ]
            if not missing:
                continue
            data = None
            if state.path is None:
                assert self.s3_call is not None  # only S3 files have no path
                try:
                    data = fetch_s3_trail_object(state.name, self.s3_call)
                except AwsCallFailed as exc:
                    self._fail(state.name, str(exc))
                    continue
            state.searched = state.searched | frozenset(missing)
            yield _Task(
                number, state.name, state.path, data, tuple(sorted(missing)), False
            )

    def _run(
        self, tasks: Iterator[_Task], executor: Executor | None
    ) -> Iterator[dict[str, Any]]:
        """Scan `tasks` (in order, a few in flight) and yield their kept records."""
        if executor is None:
            for task in tasks:
                yield from self._absorb(task, _scan(task))
            return

        in_flight: deque[tuple[_Task, Future[_Scanned]]] = deque()
        depth = 2 * self.workers + 2
        for task in tasks:
            in_flight.append((task, executor.submit(_scan, task)))
            if len(in_flight) >= depth:
                done, future = in_flight.popleft()
                yield from self._absorb(done, future.result())
        while in_flight:
            done, future = in_flight.popleft()
            yield from self._absorb(done, future.result())

    def _absorb(self, task: _Task, scanned: _Scanned) -> Iterator[dict[str, Any]]:
        self.stats.files_searched += 1
        state = self._files[task.number]
        if scanned.status == "failed":
            self._fail(task.name, scanned.reason or "unreadable")
            return
        if scanned.status == "skipped":
            self.coverage.files_skipped += 1
            log.debug("trail_file_skipped", file=task.name)
            return
        if scanned.key_index:
            state.index = scanned.key_index
        if task.number not in self._read:
            # Counted once, however many passes read the file.
            self._read.add(task.number)
            self.coverage.files_read += 1
        if not scanned.chunk:
            return

        try:
            records = _loads(scanned.chunk)
        except (ValueError, RecursionError):
            # The cut did not give whole records: parse the file itself.
            retry = task._replace(whole=True)
            if retry.path is None and retry.data is None:
                return
            scanned = _scan(retry)
            if scanned.status == "failed":
                self._fail(task.name, scanned.reason or "unreadable")
                return
            try:
                records = _loads(scanned.chunk) if scanned.chunk else []
            except (ValueError, RecursionError) as exc:
                self._fail(task.name, f"not readable: {exc}")
                return

        self.stats.files_parsed += 1
        self.stats.files_parsed_whole += scanned.whole
        self.stats.records_parsed += len(records)
        wanted = frozenset(task.wanted)
        for record in records:
            if not isinstance(record, dict):
                continue
            identity = record.get("userIdentity")
            key = identity.get("accessKeyId") if isinstance(identity, dict) else None
            if key not in wanted:
                continue
            self._derive(key, record)
            if self.window is not None and not self.window.contains(
                parse_timestamp(record.get("eventTime"))
            ):
                continue
            record["responder:origin"] = self._label
            self.stats.records_kept += 1
            yield scrub_secrets(record)

    def _derive(self, parent: str, record: dict[str, Any]) -> None:
        origin = self.keys[parent]
        for key, how in minted_keys(record):
            if key in self.keys:
                continue
            if origin.depth >= self.max_depth:
                self._truncate(
                    f"derived keys deeper than {self.max_depth} were not followed"
                )
                continue
            # `keys` holds the exposed key too: the bound is on derived keys.
            if len(self.keys) > self.max_keys:
                self._truncate(
                    f"no more than {self.max_keys} derived keys were followed"
                )
                continue
            event_id = record.get("eventID")
            event_time = record.get("eventTime")
            self.keys[key] = KeyOrigin(
                access_key_id=key,
                depth=origin.depth + 1,
                parent=parent,
                obtained_by=how,
                event_id=event_id if isinstance(event_id, str) else None,
                event_time=event_time if isinstance(event_time, str) else None,
            )
            log.info(
                "derived_key_found",
                access_key_id=key,
                parent=parent,
                obtained_by=how,
                depth=origin.depth + 1,
            )

    def _truncate(self, note: str) -> None:
        self.stats.truncated = True
        if self.stats.truncation_note is None:
            self.stats.truncation_note = note
        self.coverage.truncation = self.coverage.truncation or note
        self.coverage.add_note("Derived keys: " + note + ".")

    def _fail(self, name: str, reason: str) -> None:
        self.coverage.files_failed[name] = reason
        log.warning("trail_file_unreadable", file=name, reason=reason)

    def _record_coverage(self) -> None:
        derived = len(self.keys) - len(self.access_key_ids)
        if derived:
            self.coverage.add_note(
                f"Derived keys: {derived} key(s) obtained from the exposed key were "
                "followed in the trail files."
            )
        log.info(
            "trail_stream_read",
            source=self._label,
            keys=len(self.keys),
            files_read=self.coverage.files_read,
            files_skipped=self.coverage.files_skipped,
            files_failed=len(self.coverage.files_failed),
            files_parsed=self.stats.files_parsed,
            files_rescanned=self.stats.files_rescanned,
            records=self.stats.records_kept,
            truncated=self.stats.truncated,
        )


def _local_files(source: str) -> list[Path]:
    root = Path(source).expanduser()
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(path for path in root.rglob("*") if path.is_file())
    msg = "no such file or folder"
    raise TrailSourceUnreadable(msg)


def _delivery_order(name: str) -> tuple[str, str]:
    """Sort key: the delivery time in a CloudTrail file name, then the name.

    Reading files in time order across regions means a key is nearly always
    minted (in us-east-1 for IAM and global STS) before a file that uses it is
    read, so few files need a second read. Names without a time come first.
    """
    found = _FILE_TIME.search(name.rsplit("/", 1)[-1])

    return (found.group(1) if found else "", name)


def _indexed(index: bytes, key: str) -> bool:
    """Return whether a file's index (20-byte key prefixes, concatenated) has `key`."""
    needle = key.encode()[:_PREFIX].ljust(_PREFIX, b"\0")
    found = index.find(needle)
    while found >= 0:
        if found % _PREFIX == 0:
            return True
        found = index.find(needle, found + 1)

    return False


def _paused_gc_loads(data: bytes) -> Any:
    # Parsing makes many small containers at once; the collector would walk
    # them again and again for nothing (about half the parse time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(data)
    finally:
        if enabled:
            gc.enable()


def _loads(chunk: bytes) -> list[Any]:
    parsed = _paused_gc_loads(chunk)
    if not isinstance(parsed, list):
        msg = "not a list of records"
        raise ValueError(msg)

    return parsed


def _scan(task: _Task) -> _Scanned:
    """Search one file for the wanted keys; runs in a worker process."""
    try:
        data = task.data if task.data is not None else Path(str(task.path)).read_bytes()
    except OSError as exc:
        return _Scanned(task.number, "failed", str(exc), b"", b"", False)
    if data[:2] == _GZIP_MAGIC:
        try:
            data = inflate(data)
        except (OSError, EOFError, zlib.error) as exc:
            reason = "not valid gzip: " + str(exc)
            return _Scanned(task.number, "failed", reason, b"", b"", False)
    if _RECORDS not in data:
        return _Scanned(task.number, "skipped", None, b"", b"", False)

    wanted = frozenset(key.encode() for key in task.wanted)
    if task.whole:
        return _scan_whole(task.number, data, wanted)

    # In a compact file every `"accessKeyId"` is followed by `:"` and its value.
    parts = data.split(_FIELD)
    del parts[0]
    compact = data[:64].lstrip().startswith(_RECORDS_OPEN) and all(
        part[:2] == b':"' for part in parts
    )
    if not compact:
        # Pretty-printed or unusual: index with a regex, parse whole if needed.
        found = {value[:_PREFIX] for value in _ANY_FIELD.findall(data)}
        index = _index(found)
        if not any(key[:_PREFIX] in found for key in wanted):
            return _Scanned(task.number, "read", None, index, b"", False)
        return _scan_whole(task.number, data, wanted)

    values = [part[2 : 2 + _PREFIX] for part in parts]
    index = _index(set(values))
    prefixes = {key[:_PREFIX] for key in wanted}
    hits = [
        key
        for key in (
            _full_key(parts[number])
            for number, value in enumerate(values)
            if value in prefixes
        )
        if key in wanted
    ]
    if not hits:
        return _Scanned(task.number, "read", None, index, b"", False)

    chunk = _cut_records(data, hits)
    if chunk is None:
        return _scan_whole(task.number, data, wanted)

    return _Scanned(task.number, "read", None, index, chunk, False)


def _full_key(part: bytes) -> bytes:
    end = part.find(b'"', 2, 132)
    return part[2:end] if end >= 0 else b""


def _index(values: set[bytes]) -> bytes:
    return b"".join(sorted(value.ljust(_PREFIX, b"\0") for value in values))


def _cut_records(data: bytes, hits: list[bytes]) -> bytes | None:
    """Return `[record, ...]` around each hit, or `None` if a cut looks wrong.

    `hits` are the wanted key values of the compact `"accessKeyId":"..."`
    fields, in file order.

    Records are the objects of the `Records` array; each starts with the same
    first key as the first record, right after `[` or `,`. A wrong cut (that
    first key also opening a nested object) fails to parse later and the file
    is then parsed whole.
    """
    head = data[:64]
    opening = len(_RECORDS_OPEN) + len(head) - len(head.lstrip())
    first_end = data.find(b'"', opening + 2)
    if data[opening : opening + 2] != b'{"' or first_end < 0:
        return None
    marker = data[opening : first_end + 1]
    closing = data.rfind(b"]")

    pieces: list[bytes] = []
    last_end = cursor = -1
    for key in hits:
        # The next occurrence of this key is this hit: hits are in file order.
        found = data.find(_COMPACT_FIELD + key + b'"', cursor + 1)
        if found < 0:
            return None
        position = cursor = found + len(_COMPACT_FIELD)
        if position < last_end:
            continue  # another hit in the record already cut
        start = data.rfind(marker, 0, position)
        if start < 0 or data[start - 1 : start] not in (b"[", b","):
            return None
        end = data.find(marker, position)
        while end >= 0 and data[end - 1 : end] != b",":
            end = data.find(marker, end + 1)
        stop = end - 1 if end >= 0 else closing
        if stop <= start:
            return None
        pieces.append(data[start:stop])
        last_end = stop

    return b"[" + b",".join(pieces) + b"]"


def _scan_whole(number: int, data: bytes, wanted: frozenset[bytes]) -> _Scanned:
    index = _index({value[:_PREFIX] for value in _ANY_FIELD.findall(data)})
    try:
        document = _paused_gc_loads(data)
    except (ValueError, RecursionError) as exc:
        return _Scanned(number, "failed", "not valid JSON: " + str(exc), b"", b"", True)
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        return _Scanned(number, "skipped", None, b"", b"", True)

    names = {key.decode() for key in wanted}
    selected = [
        record
        for record in records
        if isinstance(record, dict)
        and isinstance(record.get("userIdentity"), dict)
        and record["userIdentity"].get("accessKeyId") in names
    ]
    try:
        chunk = json.dumps(selected).encode() if selected else b""
    except (ValueError, RecursionError) as exc:
        return _Scanned(number, "failed", "not readable: " + str(exc), b"", b"", True)

    return _Scanned(number, "read", None, index, chunk, True)


def default_workers() -> int:
    """Return the number of processes worth using for a large trail (at most 2)."""
    return max(1, min(2, os.cpu_count() or 1))
