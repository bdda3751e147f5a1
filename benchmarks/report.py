"""Measure the offline report on a large synthetic trail against simple baselines.

The trail is generated once and cached under `--data` (default `.bench-data/`,
git-ignored): gzipped `{"Records": [...]}` files of about 2,500 records each,
laid out like an S3 trail bucket (`AWSLogs/<account>/CloudTrail/<region>/...`)
in four regions, built from the real record shapes in the team corpus
(`corpus/cloudtrail/invictus-ir_*`) with fresh event IDs, times, keys and IPs.

About 5% of the records are made by the exposed key and the twelve keys derived
from it (sessions, role chains, a backdoor user's key), with their minting
records present. Global STS and IAM calls are logged in us-east-1, whose files
sort after ap-southeast-2 and eu-west-1: keys minted late are used in files the
reader has already passed. Other principals' records also name our keys in
their `responseElements` (not our events), one file is pretty-printed and two
digest files sit in the bucket.

One run then measures, on the same files and with the page cache warm:

- ours: `responder report --format json` as a subprocess (the whole path);
- floor: `zcat FILES | grep -c KEY`;
- DuckDB `read_json` selecting records whose `userIdentity.accessKeyId` is in the
  key set (when the `duckdb` module is installed);
- jq: `zcat FILES | jq -c '.Records[] | select(...)'` (when `jq` is installed).

It prints wall seconds and peak RSS for each, the ratios, and the number of
records each found (a warning is printed when they disagree).

Usage::

    .venv/bin/python benchmarks/report.py --records 50000
    .venv/bin/python benchmarks/report.py --records 2000000 --repeat 3
"""

from __future__ import annotations

import argparse
import base64
import bisect
import gzip
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "cloudtrail"
INVICTUS = CORPUS / "invictus-ir_aws_dataset_stratus-2023-07-10"
DIGEST = CORPUS / "elastic-integrations_CloudTrail-Digest-file_not-Records_skip-me.json"
TEMPLATE_KEY = "AKIATFQR7NSC8Q4X20BJ"  # the busy key of the invictus capture

GENERATOR_VERSION = 6
ACCOUNT = "210987654321"
PER_FILE = 2500
OUR_SHARE = 0.05
# Share of other principals' records whose response names one of our keys.
MENTION_SHARE = 0.0007
START = datetime(2024, 5, 1, tzinfo=UTC)
SPAN = timedelta(hours=24)
REGIONS = (
    ("us-east-1", 0.5),
    ("eu-west-1", 0.2),
    ("ap-southeast-2", 0.15),
    ("us-west-2", 0.15),
)
ATTACKER_IPS = ("198.51.100.23", "198.51.100.77", "203.0.113.41")
MINTING = {"AssumeRole", "GetSessionToken", "GetFederationToken", "CreateAccessKey"}
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

# (name, parent, how, share of the span when minted)
DERIVATIONS = (
    ("d01", "exposed", "GetSessionToken", 0.10),
    ("d02", "exposed", "AssumeRole", 0.20),
    ("d03", "d02", "AssumeRole", 0.30),
    ("d04", "exposed", "CreateAccessKey", 0.35),
    ("d05", "d04", "AssumeRole", 0.45),
    ("d06", "exposed", "GetFederationToken", 0.50),
    ("d07", "d03", "AssumeRole", 0.60),
    ("d08", "d04", "GetSessionToken", 0.70),
    ("d09", "exposed", "AssumeRole", 0.80),
    ("d10", "d05", "CreateAccessKey", 0.85),
    ("d11", "d10", "AssumeRole", 0.90),
    ("d12", "d09", "AssumeRole", 0.95),
)


@dataclass(frozen=True)
class FileSpec:
    """One log file to write: where, which region, which time slot."""

    index: int
    path: str
    region: str
    start: float
    end: float
    records: int
    pretty: bool


def _key(rng: random.Random, prefix: str) -> str:
    return prefix + base64.b32encode(rng.getrandbits(80).to_bytes(10, "big")).decode()


def _event_id(rng: random.Random) -> str:
    value = f"{rng.getrandbits(128):032x}"
    return "-".join((value[:8], value[8:12], value[12:16], value[16:20], value[20:]))


def _moment(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _template(record: dict[str, Any], *, mint: bool) -> str:
    """Return `record` as compact JSON with %(name)s slots for the varied fields."""
    body = json.loads(json.dumps(record))
    body["eventID"] = "@@eid@@"
    body["eventTime"] = "@@time@@"
    body["requestID"] = "@@req@@"
    body["sourceIPAddress"] = "@@ip@@"
    body["awsRegion"] = "@@region@@"
    body["recipientAccountId"] = ACCOUNT
    identity = body.get("userIdentity")
    if isinstance(identity, dict) and "accessKeyId" in identity:
        identity["accessKeyId"] = "@@key@@"
        identity["accountId"] = ACCOUNT
    response = body.get("responseElements")
    if isinstance(response, dict):
        for holder in ("credentials", "accessKey"):
            if isinstance(response.get(holder), dict) and mint:
                response[holder]["accessKeyId"] = "@@mint@@"
    text = json.dumps(body, separators=(",", ":")).replace("%", "%%")
    for name in ("eid", "time", "req", "ip", "region", "key", "mint"):
        text = text.replace(f'"@@{name}@@"', f'"%({name})s"')

    return text


_TEMPLATES: list[tuple[list[str], list[str], dict[str, str]]] = []


def _load_templates() -> tuple[list[str], list[str], dict[str, str]]:
    if _TEMPLATES:
        return _TEMPLATES[0]
    records: list[dict[str, Any]] = []
    for path in sorted(INVICTUS.iterdir()):
        records += json.loads(gzip.decompress(path.read_bytes()))["Records"]

    ours: list[str] = []
    others: list[str] = []
    minting: dict[str, str] = {}
    for record in records:
        identity = record.get("userIdentity") or {}
        response = record.get("responseElements")
        names_key = isinstance(response, dict) and "accessKeyId" in json.dumps(response)
        if identity.get("accessKeyId") == TEMPLATE_KEY:
            if names_key and not record.get("errorCode"):
                minting.setdefault(record["eventName"], _template(record, mint=True))
                continue
            ours.append(_template(record, mint=False))
        else:
            others.append(_template(record, mint=True))
    # STS session calls share AssumeRole's response shape.
    for how in ("GetSessionToken", "GetFederationToken"):
        minting[how] = minting["AssumeRole"].replace(
            '"eventName":"AssumeRole"', f'"eventName":"{how}"'
        )
    _TEMPLATES.append((ours, others, minting))

    return ours, others, minting


def _plan(records: int, data: Path) -> list[FileSpec]:
    files = max(1, math.ceil(records / PER_FILE))
    counts = [max(1, round(files * share)) for _, share in REGIONS]
    counts[0] += files - sum(counts)
    rng = random.Random(7)
    specs: list[FileSpec] = []
    left = records
    span = SPAN.total_seconds()
    for (region, _), count in zip(REGIONS, counts, strict=True):
        for slot in range(count):
            start = span * slot / count
            moment = START + timedelta(seconds=start)
            name = (
                f"{ACCOUNT}_CloudTrail_{region}_{moment:%Y%m%dT%H%MZ}_"
                + "".join(rng.choice(_ALNUM) for _ in range(16))
                + ".json.gz"
            )
            folder = f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{moment:%Y/%m/%d}"
            size = min(PER_FILE, left) if left > 0 else 0
            left -= size
            specs.append(
                FileSpec(
                    index=len(specs),
                    path=str(data / folder / name),
                    region=region,
                    start=start,
                    end=span * (slot + 1) / count,
                    records=size,
                    pretty=False,
                )
            )
    specs = [spec for spec in specs if spec.records]
    # One pretty-printed file, in a region read before the minting region.
    middle = next(spec for spec in specs if spec.region == "eu-west-1")
    specs[middle.index] = FileSpec(**{**middle.__dict__, "pretty": True})

    return specs


def _keys(seed: int) -> dict[str, str]:
    rng = random.Random(f"keys-{seed}")
    keys = {"exposed": _key(rng, "AKIA")}
    for name, _, how, _ in DERIVATIONS:
        keys[name] = _key(rng, "AKIA" if how == "CreateAccessKey" else "ASIA")

    return keys


def _write_file(spec: FileSpec, seed: int, keys: dict[str, str]) -> dict[str, int]:
    ours_t, others_t, minting_t = _load_templates()
    rng = random.Random(seed * 1_000_003 + spec.index)
    others_pool = [
        _key(random.Random(f"other-{n}"), "AKIA" if n % 3 else "ASIA")
        for n in range(500)
    ]
    minted_at = {
        name: share * SPAN.total_seconds() for name, _, _, share in DERIVATIONS
    }
    minted_at["exposed"] = -1.0

    moments = sorted(rng.uniform(spec.start, spec.end) for _ in range(spec.records))
    lines: list[str] = []
    flags: list[bool] = []  # whether each line is made by one of our keys
    mentions = 0
    for moment in moments:
        fields = {
            "eid": _event_id(rng),
            "time": _moment(moment),
            "req": _event_id(rng),
            "region": spec.region,
            "mint": _key(rng, "ASIA"),
        }
        if rng.random() < OUR_SHARE:
            usable = [name for name, at in minted_at.items() if at < moment]
            name = "exposed" if rng.random() < 0.4 else rng.choice(usable)
            fields["key"] = keys[name]
            fields["ip"] = rng.choice(ATTACKER_IPS)
            lines.append(rng.choice(ours_t) % fields)
            flags.append(True)
            continue
        fields["key"] = rng.choice(others_pool)
        fields["ip"] = (
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        )
        line = rng.choice(others_t) % fields
        if rng.random() < MENTION_SHARE:
            # An admin's inventory call whose response lists one of our keys.
            # Only keys that exist by then can be listed.
            usable = [name for name, at in minted_at.items() if at < moment]
            mentioned = keys[rng.choice(usable)]
            listing = json.dumps(
                {"accessKeyMetadata": [{"accessKeyId": mentioned, "status": "Active"}]},
                separators=(",", ":"),
            )
            line = line.replace(
                '"responseElements":null', '"responseElements":' + listing, 1
            )
            mentions += '"responseElements":' + listing in line
        lines.append(line)
        flags.append(False)

    # Minting records of our keys go to the us-east-1 file of their time.
    minted_slots: set[int] = {0}
    for name, parent, how, share in DERIVATIONS:
        moment = share * SPAN.total_seconds()
        if spec.region == "us-east-1" and spec.start <= moment < spec.end and lines:
            fields = {
                "eid": _event_id(rng),
                "time": _moment(moment),
                "req": _event_id(rng),
                "region": spec.region,
                "key": keys[parent],
                "ip": ATTACKER_IPS[0],
                "mint": keys[name],
            }
            # Replace the record at the minting time, never another minting one.
            slot = min(bisect.bisect(moments, moment), len(lines) - 1)
            while slot in minted_slots:
                slot = (slot + 1) % len(lines)
            minted_slots.add(slot)
            lines[slot] = minting_t[how] % fields
            flags[slot] = True
    # The admin's CreateAccessKey that made the exposed key: not our event.
    if spec.index == 0 and lines:
        fields = {
            "eid": _event_id(rng),
            "time": _moment(spec.start),
            "req": _event_id(rng),
            "region": spec.region,
            "key": others_pool[0],
            "ip": "10.0.0.1",
            "mint": keys["exposed"],
        }
        lines[0] = minting_t["CreateAccessKey"] % fields
        flags[0] = False

    # A final newline keeps each file one line for grep: without it `zcat FILES`
    # is a single line of gigabytes, and grep buffers all of it.
    text = '{"Records":[' + ",".join(lines) + "]}\n"
    if spec.pretty:
        text = json.dumps(json.loads(text), indent=4)
    path = Path(spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode(), compresslevel=6, mtime=0))

    return {"records": len(lines), "ours": sum(flags), "mentions": mentions}


def generate(data: Path, records: int, seed: int) -> dict[str, Any]:
    """Write the trail under `data` unless it is cached; return its manifest."""
    manifest_path = data / "manifest.json"
    if manifest_path.exists():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if (
            manifest.get("records") == records
            and manifest.get("seed") == seed
            and manifest.get("version") == GENERATOR_VERSION
        ):
            return manifest
        shutil.rmtree(data / "AWSLogs", ignore_errors=True)

    started = time.perf_counter()
    data.mkdir(parents=True, exist_ok=True)
    keys = _keys(seed)
    specs = _plan(records, data)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(
            pool.map(_write_file, specs, [seed] * len(specs), [keys] * len(specs))
        )
    digest_folder = data / "AWSLogs" / ACCOUNT / "CloudTrail-Digest" / "us-east-1"
    digest_folder.mkdir(parents=True, exist_ok=True)
    for number in (1, 2):
        digest_name = f"{ACCOUNT}_CloudTrail-Digest_us-east-1_{number}.json.gz"
        (digest_folder / digest_name).write_bytes(gzip.compress(DIGEST.read_bytes()))

    manifest = {
        "version": GENERATOR_VERSION,
        "records": sum(result["records"] for result in results),
        "seed": seed,
        "files": len(specs),
        "exposed_key": keys["exposed"],
        "keys": sorted(keys.values()),
        "expected": sum(result["ours"] for result in results),
        "mentions": sum(result["mentions"] for result in results),
        "generated_in_s": round(time.perf_counter() - started, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))

    return manifest


@dataclass
class Measure:
    """One method's run: wall seconds, peak RSS (largest process), records found."""

    name: str
    seconds: list[float]
    peak_mib: float
    found: int | None
    note: str = ""


def _run(command: list[str] | str, *, shell: bool = False) -> tuple[float, float, str]:
    """Run `command`; return wall seconds, its peak RSS in MiB and its stdout.

    The peak comes from GNU time (`%M`): the largest of the command and the
    processes it waited for (a pipeline's or a worker pool's biggest member).
    Measuring from this process instead would count the pages the child shared
    with it before `exec`.
    """
    argv = ["sh", "-c", command] if shell and isinstance(command, str) else command
    assert isinstance(argv, list)
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], capture_output=True, check=False
    )
    seconds = time.perf_counter() - started
    peak_kib = done.stderr.decode().strip().splitlines()[-1]

    return seconds, int(peak_kib) / 1024, done.stdout.decode()


def _files(data: Path) -> list[str]:
    return sorted(str(path) for path in (data / "AWSLogs").rglob("*.json.gz"))


def _zcat(data: Path) -> str:
    """Return a shell command that inflates every log file to stdout, in name order."""
    folder = shlex.quote(str(data / "AWSLogs"))
    return (
        f"find {folder} -path '*/CloudTrail/*' -name '*.json.gz' -print0 "
        "| sort -z | xargs -0 zcat"
    )


def measure_ours(data: Path, manifest: dict[str, Any], repeat: int) -> Measure:
    """Time `responder report --format json` over the trail folder."""
    out = data / "report.json"
    command = [
        sys.executable,
        "-m",
        "responder",
        "report",
        "--access-key-id",
        manifest["exposed_key"],
        "--cloudtrail",
        str(data / "AWSLogs"),
        "--format",
        "json",
        "--out",
        str(out),
    ]
    runs = [_run(command) for _ in range(repeat)]
    report = json.loads(out.read_text())
    found = len(report["events"])
    out.unlink()

    return Measure(
        "responder report (ours)", [r[0] for r in runs], max(r[1] for r in runs), found
    )


def measure_floor(data: Path, manifest: dict[str, Any], repeat: int) -> Measure:
    """Time `zcat FILES | grep -F -c KEY` (a line is a file here: it counts files)."""
    if shutil.which("zcat") is None or shutil.which("grep") is None:
        return Measure("zcat | grep -c", [], 0, None, "not installed")
    key = shlex.quote(manifest["exposed_key"])
    command = f"{_zcat(data)} | LC_ALL=C grep -F -c {key}"
    # Our own generated files, quoted: the shell only builds the pipeline.
    runs = [_run(command, shell=True) for _ in range(repeat)]  # noqa: S604

    return Measure(
        "zcat | grep -c KEY (floor)",
        [r[0] for r in runs],
        max(r[1] for r in runs),
        None,
        "counts matching lines (one per file), not records",
    )


def measure_duckdb(data: Path, manifest: dict[str, Any], repeat: int) -> Measure:
    """Time DuckDB `read_json` selecting the records of the key set."""
    try:
        import duckdb  # noqa: F401 - optional, only checked here
    except ImportError:
        return Measure("duckdb read_json", [], 0, None, "not installed")
    keys = ", ".join("'" + key + "'" for key in manifest["keys"])
    glob = str(data / "AWSLogs" / "*" / "CloudTrail" / "**" / "*.json.gz")
    # Keys and paths come from our own generator, not from outside input.
    query = (
        "SELECT count(*) FROM (SELECT unnest(Records) AS r FROM read_json("  # noqa: S608
        f"'{glob}', columns={{Records: 'STRUCT(userIdentity STRUCT(accessKeyId "
        "VARCHAR))[]'}, maximum_object_size=268435456)) "
        f"WHERE r.userIdentity.accessKeyId IN ({keys})"
    )
    script = (
        "import duckdb; con = duckdb.connect(); con.execute('SET threads=2'); "
        "con.execute('SET enable_progress_bar=false'); "
        f"print(con.execute({query!r}).fetchone()[0])"
    )
    runs = [_run([sys.executable, "-c", script]) for _ in range(repeat)]
    found = int(runs[-1][2].strip().splitlines()[-1] or -1)

    return Measure(
        "duckdb read_json (count)", [r[0] for r in runs], max(r[1] for r in runs), found
    )


def measure_jq(data: Path, manifest: dict[str, Any], repeat: int) -> Measure:
    """Time `zcat FILES | jq -c '.Records[]? | select(...)'`, counting lines."""
    if shutil.which("jq") is None:
        return Measure("jq select", [], 0, None, "not installed")
    keys = json.dumps(manifest["keys"])
    program = (
        f'.Records[]? | select((.userIdentity.accessKeyId // "") as $k '
        f"| {keys} | index($k))"
    )
    command = f"{_zcat(data)} | jq -c {shlex.quote(program)} | wc -l"
    # Our own generated files, quoted: the shell only builds the pipeline.
    runs = [_run(command, shell=True) for _ in range(repeat)]  # noqa: S604
    found = int(runs[-1][2].strip().splitlines()[-1] or -1)

    return Measure(
        "jq select (zcat | jq)", [r[0] for r in runs], max(r[1] for r in runs), found
    )


def _machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = "unknown RAM"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
            break

    return (
        f"nproc={os.cpu_count()}, {model}, {memory}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Generate (or reuse) the trail, run every method, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--data", type=Path, default=REPO / ".bench-data")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skip", action="append", default=[], help="ours|floor|duckdb|jq"
    )
    args = parser.parse_args(argv)

    data = args.data / f"records-{args.records}"
    manifest = generate(data, args.records, args.seed)
    print(f"machine: {_machine()}")
    print(
        f"trail: {manifest['records']:,} records in {manifest['files']} files "
        f"under {data} ({manifest['expected']:,} from {len(manifest['keys'])} keys; "
        f"{manifest['mentions']:,} other records name one of them)"
    )
    print("command: " + " ".join(shlex.quote(part) for part in sys.argv))
    # Warm the page cache so every method reads from memory.
    for name in _files(data):
        Path(name).read_bytes()

    methods = {
        "ours": measure_ours,
        "floor": measure_floor,
        "duckdb": measure_duckdb,
        "jq": measure_jq,
    }
    results = {
        name: method(data, manifest, args.repeat)
        for name, method in methods.items()
        if name not in args.skip
    }

    print(f"{'method':34} {'wall s (median)':>16} {'peak MiB':>9} {'records':>9}")
    for measure in results.values():
        if not measure.seconds:
            print(f"{measure.name:34} {measure.note}")
            continue
        found = "-" if measure.found is None else str(measure.found)
        print(
            f"{measure.name:34} {statistics.median(measure.seconds):16.2f} "
            f"{measure.peak_mib:9.0f} {found:>9}"
            + (f"  ({measure.note})" if measure.note else "")
        )
    ours = results.get("ours")
    if ours and ours.seconds:
        for name in ("floor", "duckdb", "jq"):
            other = results.get(name)
            if other and other.seconds:
                ratio = statistics.median(ours.seconds) / statistics.median(
                    other.seconds
                )
                print(f"ours / {name}: {ratio:.2f}")
    counts = {m.name: m.found for m in results.values() if m.found is not None}
    counts["expected (generator)"] = manifest["expected"]
    if len(set(counts.values())) > 1:
        print(
            "WARNING: the methods disagree on the record count: " + json.dumps(counts)
        )
    else:
        print(f"all methods found {manifest['expected']:,} records")

    return 0


if __name__ == "__main__":
    sys.exit(main())
