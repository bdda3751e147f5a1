"""Measure webhook acknowledgement and time-to-containment on the sandbox.

Everything runs in one process on loopback: the moto server of `Sandbox`, the
responder (uvicorn in a thread, with the sandbox's GitHub stand-in) and the
senders. Nothing leaves 127.0.0.1; boto3 gets the sandbox's fake credentials.

The benchmark creates one IAM user with one access key per incident, registers a
secret-scanning alert naming each key in the stand-in, then sends one signed
`secret_scanning_alert` delivery per alert from `--concurrency` threads. It
reports, over all incidents:

- acknowledgement: client-side time from sending `POST /webhooks/github` to
  its 2xx response;
- time to Inactive: the `deactivate` step's `finished_at`, as the responder
  records it, minus the moment the delivery was sent. This includes the
  background alert lookup through the stand-in and the `resolve` step.

At the end it reads every key back with `ListAccessKeys` to confirm it is
Inactive.

By default the report step reads an empty trail bucket (`--trail empty`), so the
run measures containment rather than report building: with the seeded trail of
~2,900 records, each incident parses the whole trail, which dominates a run of
hundreds of incidents on a small machine. `--trail seeded` uses the real one.

Usage::

    .venv/bin/python benchmarks/latency.py
    .venv/bin/python benchmarks/latency.py --incidents 300 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import secrets
import shlex
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import uvicorn

from responder.app import build_services, create_app
from responder.logging import configure_logging
from responder.sandbox.demo import sample_deliveries, sign
from responder.sandbox.service import Sandbox, SandboxWorld, free_port
from responder.sandbox.views import github_stand_in

EMPTY_TRAIL_BUCKET = "responder-benchmark-empty-trail"
# Alert 1 is the sandbox's own exposed key; ours start above it.
FIRST_ALERT = 1001
FINAL_STATUSES = frozenset({"completed", "partial", "failed", "not_actionable"})


@dataclass
class Delivery:
    """One signed delivery to send, and what happened when it was sent."""

    alert_number: int
    user_name: str
    access_key_id: str
    delivery_id: str
    body: bytes
    sent_at: float = 0.0
    ack_seconds: float = 0.0
    status_code: int = 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table and return the exit status."""
    args = _parser().parse_args(argv)
    configure_logging(level="warning")
    # moto's server logs every request through werkzeug, even with verbose=False.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    command = shlex.join(["python", "benchmarks/latency.py", *sys.argv[1:]])

    with tempfile.TemporaryDirectory(prefix="responder-bench-") as tmp, Sandbox() as sb:
        assert sb.world is not None
        started = time.monotonic()
        keys = create_keys(sb.endpoint_url, count=args.incidents)
        if args.trail == "empty":
            boto3.client("s3", endpoint_url=sb.endpoint_url).create_bucket(
                Bucket=EMPTY_TRAIL_BUCKET
            )
        seeded_in = time.monotonic() - started

        results = run_deliveries(
            sb, keys, args=args, database=Path(tmp) / "responder.db"
        )
        inactive = count_inactive(sb.endpoint_url, keys)

    print_table(
        results, inactive=inactive, args=args, command=command, seeded_in=seeded_in
    )

    complete = len(results["times_to_inactive"]) == args.incidents
    return 0 if complete and inactive == args.incidents else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--incidents", type=_bounded(1, 1000), default=300, help="default 300"
    )
    parser.add_argument(
        "--concurrency", type=_bounded(1, 64), default=8, help="sender threads"
    )
    parser.add_argument(
        "--workers", type=_bounded(1, 64), default=8, help="responder workers"
    )
    parser.add_argument(
        "--trail",
        choices=["empty", "seeded"],
        default="empty",
        help="trail bucket the report step reads (default: empty)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for incidents"
    )

    return parser


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            msg = f"must be between {low} and {high}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def create_keys(endpoint_url: str, *, count: int) -> list[tuple[str, str]]:
    """Create `count` IAM users with one access key each; return (user, key ID)."""
    iam = boto3.client("iam", endpoint_url=endpoint_url)
    keys = []
    for index in range(count):
        user_name = f"bench-user-{index:04d}"
        iam.create_user(UserName=user_name)
        created = iam.create_access_key(UserName=user_name)["AccessKey"]
        keys.append((user_name, created["AccessKeyId"]))

    return keys


def build_deliveries(
    world: SandboxWorld, keys: list[tuple[str, str]], *, url: str
) -> list[Delivery]:
    """Register an alert per key in the stand-in; return one signed delivery each.

    Each delivery is the demo's AWS key alert with its own alert number and URL.
    """
    template = next(
        json.loads(body)
        for label, _event, _delivery, body in sample_deliveries(url)
        if label == "AWS key alert"
    )
    repo = template["repository"]["full_name"]
    alert_url = f"{url}/_sandbox/github/repos/{repo}/secret-scanning/alerts"

    deliveries = []
    for offset, (user_name, key_id) in enumerate(keys):
        number = FIRST_ALERT + offset
        world.alerts[number] = {**world.alerts[1], "number": number, "secret": key_id}
        payload = {**template, "alert": dict(template["alert"])}
        payload["alert"].update(
            {
                "number": number,
                "url": f"{alert_url}/{number}",
                "html_url": f"https://github.com/{repo}/security/secret-scanning/{number}",
            }
        )
        body = json.dumps(payload).encode()
        deliveries.append(Delivery(number, user_name, key_id, str(uuid.uuid4()), body))

    return deliveries


def run_deliveries(
    sandbox: Sandbox,
    keys: list[tuple[str, str]],
    *,
    args: argparse.Namespace,
    database: Path,
) -> dict[str, Any]:
    """Serve the responder, send every delivery, wait for the incidents.

    Returns the acknowledgement times, times to Inactive (both in seconds), the
    final incident statuses, failed sends and the phase durations.
    """
    assert sandbox.world is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    values = {
        name: secrets.token_urlsafe(32)
        for name in (
            "RESPONDER_GITHUB_WEBHOOK_SECRET",
            "RESPONDER_API_TOKEN",
            "RESPONDER_GITHUB_TOKEN",
        )
    }
    # No environment: stray RESPONDER_* variables must not skew the run. With
    # --trail empty the report step reads a bucket holding nothing.
    settings = sandbox.settings(
        values,
        public_url=url,
        database=database,
        workers=args.workers,
        log_level="warning",
        **({"trail_bucket": EMPTY_TRAIL_BUCKET} if args.trail == "empty" else {}),
    )
    deliveries = build_deliveries(sandbox.world, keys, url=url)
    app = create_app(
        build_services(settings),
        extra_routers=[
            github_stand_in(sandbox.world, values["RESPONDER_GITHUB_TOKEN"])
        ],
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        _wait_started(server)

        started = time.monotonic()
        send_all(
            deliveries,
            url=url,
            secret=values["RESPONDER_GITHUB_WEBHOOK_SECRET"],
            args=args,
        )
        sent_in = time.monotonic() - started
        incidents = wait_final(
            url, values["RESPONDER_API_TOKEN"], deliveries, args.timeout
        )
        drained_in = time.monotonic() - started
        details = fetch_details(url, values["RESPONDER_API_TOKEN"], incidents)
    finally:
        # The lifespan lets running playbooks finish before the thread ends.
        server.should_exit = True
        thread.join(timeout=60)

    return collect(deliveries, details, sent_in=sent_in, drained_in=drained_in)


def _wait_started(server: uvicorn.Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline:
            msg = f"uvicorn did not start within {timeout:.0f} s"
            raise RuntimeError(msg)
        time.sleep(0.05)


def send_all(
    deliveries: list[Delivery], *, url: str, secret: str, args: argparse.Namespace
) -> None:
    """Send the deliveries from `args.concurrency` threads, one client each.

    Each thread sends its share back to back, so at most `concurrency` deliveries
    are in flight. Records the send time and the acknowledgement time on each.
    """

    def sender(share: list[Delivery]) -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as client:
            for delivery in share:
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "secret_scanning_alert",
                    "X-GitHub-Delivery": delivery.delivery_id,
                    "X-Hub-Signature-256": sign(delivery.body, secret),
                }
                delivery.sent_at = time.time()
                began = time.perf_counter()
                try:
                    response = client.post(
                        f"{url}/webhooks/github", content=delivery.body, headers=headers
                    )
                except httpx.HTTPError:
                    continue
                delivery.ack_seconds = time.perf_counter() - began
                delivery.status_code = response.status_code

    threads = [
        threading.Thread(target=sender, args=(deliveries[index :: args.concurrency],))
        for index in range(args.concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_final(
    url: str, token: str, deliveries: list[Delivery], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the API until every key's incident is final; return them by key ID.

    On timeout, returns the incidents seen so far (final or not).
    """
    wanted = {delivery.access_key_id for delivery in deliveries}
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            listed = client.get(
                f"{url}/api/v1/incidents", params={"limit": 1000}, headers=headers
            ).json()
            seen = {
                item["access_key_id"]: item
                for item in listed["incidents"]
                if item["access_key_id"] in wanted
            }
            final = [item for item in seen.values() if item["status"] in FINAL_STATUSES]
            if len(final) == len(wanted):
                break
            time.sleep(0.5)

    return seen


def fetch_details(
    url: str, token: str, incidents: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Return each incident with its steps, by key ID."""
    headers = {"Authorization": f"Bearer {token}"}
    details = {}
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        for key_id, incident in incidents.items():
            response = client.get(
                f"{url}/api/v1/incidents/{incident['id']}", headers=headers
            )
            details[key_id] = response.json()

    return details


def collect(
    deliveries: list[Delivery],
    details: dict[str, dict[str, Any]],
    *,
    sent_in: float,
    drained_in: float,
) -> dict[str, Any]:
    """Pair each delivery with its incident's `deactivate` step."""
    times_to_inactive = []
    statuses: dict[str, int] = {}
    for delivery in deliveries:
        incident = details.get(delivery.access_key_id)
        if incident is None:
            statuses["no incident"] = statuses.get("no incident", 0) + 1
            continue
        statuses[incident["status"]] = statuses.get(incident["status"], 0) + 1
        step = next(
            (item for item in incident["steps"] if item["name"] == "deactivate"), None
        )
        if step is None or step["status"] != "succeeded" or not step["finished_at"]:
            continue
        finished = datetime.fromisoformat(step["finished_at"].replace("Z", "+00:00"))
        times_to_inactive.append(finished.timestamp() - delivery.sent_at)

    acknowledged = [d for d in deliveries if 200 <= d.status_code < 300]

    return {
        "ack_seconds": [d.ack_seconds for d in acknowledged],
        "ack_codes": sorted({d.status_code for d in deliveries}),
        "send_failures": len(deliveries) - len(acknowledged),
        "times_to_inactive": times_to_inactive,
        "statuses": statuses,
        "sent_in": sent_in,
        "drained_in": drained_in,
    }


def count_inactive(endpoint_url: str, keys: list[tuple[str, str]]) -> int:
    """Return how many of the keys moto reports as Inactive."""
    iam = boto3.client("iam", endpoint_url=endpoint_url)
    inactive = 0
    for user_name, key_id in keys:
        listed = iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
        status = {item["AccessKeyId"]: item["Status"] for item in listed}.get(key_id)
        inactive += status == "Inactive"

    return inactive


def percentile(values: list[float], rank: float) -> float:
    """Return the nearest-rank percentile of `values` (`rank` in 0-100)."""
    ordered = sorted(values)
    index = max(0, math.ceil(rank / 100 * len(ordered)) - 1)

    return ordered[index]


def machine() -> str:
    """Return the CPU count, CPU model and Python version, on one line."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    cpus = len(_affinity()) or "?"

    return (
        f"{cpus} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return set(range(os.cpu_count() or 0))


def print_table(
    results: dict[str, Any],
    *,
    inactive: int,
    args: argparse.Namespace,
    command: str,
    seeded_in: float,
) -> None:
    """Print the machine, the run's parameters and the latency table."""
    trail = (
        "EMPTY trail bucket: measures containment; the report reads no records"
        if args.trail == "empty"
        else "seeded trail bucket (~2,900 records read per incident)"
    )
    lines = [
        f"machine      {machine()}",
        f"command      {command}",
        f"incidents    {args.incidents}  concurrency {args.concurrency}"
        f"  workers {args.workers}",
        f"report step  {trail}",
        f"phases       seed {seeded_in:.1f} s, send {results['sent_in']:.1f} s,"
        f" send to all final {results['drained_in']:.1f} s",
        f"statuses     {results['statuses']}  HTTP {results['ack_codes']}"
        f"  send failures {results['send_failures']}",
        f"IAM check    {inactive}/{args.incidents} keys Inactive (ListAccessKeys)",
        "",
        f"{'metric (ms)':<32}{'n':>5}{'min':>9}{'p50':>9}{'p90':>9}{'p99':>9}"
        f"{'max':>9}",
    ]
    for label, values in (
        ("webhook acknowledgement", results["ack_seconds"]),
        ("delivery sent -> key Inactive", results["times_to_inactive"]),
    ):
        if not values:
            lines.append(f"{label:<32}{0:>5}  (no data)")
            continue
        cells = "".join(
            f"{percentile(values, rank) * 1000:>9.1f}" for rank in (50, 90, 99)
        )
        lines.append(
            f"{label:<32}{len(values):>5}{min(values) * 1000:>9.1f}{cells}"
            f"{max(values) * 1000:>9.1f}"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
