"""Command-line interface: serve, respond, report, demo, playbooks validate."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from responder._time import utcnow
from responder.config import Settings
from responder.exceptions import ResponderError
from responder.logging import configure_logging

__all__ = ["main"]

_SANDBOX_DIR = Path(".responder-sandbox")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except ResponderError as exc:
        print(f"responder: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="responder", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--sandbox", action="store_true", help="simulated AWS (moto)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    respond = commands.add_parser("respond", help="run the playbook in the foreground")
    respond.add_argument("--access-key-id", required=True)
    respond.add_argument("--dry-run", action="store_true")
    respond.add_argument("--sandbox", action="store_true", help="simulated AWS (moto)")
    respond.add_argument("--reason", default="manual response from the command line")
    respond.set_defaults(handler=_respond)

    report = commands.add_parser(
        "report", help="blast-radius report from exported logs"
    )
    report.add_argument("--access-key-id", required=True)
    where = report.add_mutually_exclusive_group(required=True)
    where.add_argument("--cloudtrail", help="folder, file or s3://b/p of trail files")
    where.add_argument(
        "--athena-table", help="query this CloudTrail table (db.table) with Athena"
    )
    report.add_argument("--athena-workgroup", default="primary")
    report.add_argument("--athena-output", help="s3:// location for query results")
    report.add_argument("--organization-id", help="partition layout of an org trail")
    report.add_argument("--days", type=int, default=90, help="Athena window, days back")
    report.add_argument("--format", choices=["json", "md", "html", "csv"], default="md")
    report.add_argument("--out", type=Path, help="write here instead of stdout")
    report.set_defaults(handler=_report)

    demo = commands.add_parser("demo", help="send the sample deliveries to a service")
    demo.add_argument("--url", default="http://127.0.0.1:8000")
    demo.add_argument("--timeout", type=float, default=60.0)
    demo.set_defaults(handler=_demo)

    playbooks = commands.add_parser("playbooks", help="playbook files")
    playbook_commands = playbooks.add_subparsers(required=True, metavar="COMMAND")
    validate = playbook_commands.add_parser("validate", help="check every playbook")
    validate.add_argument("directory", nargs="?", type=Path)
    validate.set_defaults(handler=_validate)

    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from responder.app import build_services, create_app

    if not args.sandbox:
        settings = Settings.from_env()
        configure_logging(level=settings.log_level, fmt=settings.log_format)
        app = create_app(build_services(settings))
        uvicorn.run(app, host=args.host, port=args.port, log_config=None)
        return 0

    from responder.sandbox.service import Sandbox, sandbox_secrets
    from responder.sandbox.views import github_stand_in

    public_url = f"http://{args.host}:{args.port}"
    values = sandbox_secrets(_SANDBOX_DIR)
    with Sandbox() as sandbox:
        assert sandbox.world is not None
        settings = _sandbox_settings(sandbox, values, public_url=public_url)
        configure_logging(level=settings.log_level, fmt=settings.log_format)
        services = build_services(settings)
        app = create_app(
            services,
            extra_routers=[
                github_stand_in(sandbox.world, values["RESPONDER_GITHUB_TOKEN"])
            ],
        )
        _print_sandbox_banner(sandbox, values, public_url)
        uvicorn.run(app, host=args.host, port=args.port, log_config=None)

    return 0


def _sandbox_settings(
    sandbox: Any, values: dict[str, str], *, public_url: str
) -> Settings:
    # Always its own file, never RESPONDER_DATABASE: the sandbox starts it afresh,
    # since moto's state lives in memory and older records would point at nothing.
    database = _SANDBOX_DIR / "responder.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    environ = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("RESPONDER_") and name != "RESPONDER_DATABASE"
    }

    settings: Settings = sandbox.settings(
        values, public_url=public_url, database=database, environ=environ
    )

    return settings


def _print_sandbox_banner(
    sandbox: Any, values: dict[str, str], public_url: str
) -> None:
    world = sandbox.world
    lines = [
        "responder sandbox: simulated AWS account on loopback (moto)",
        f"  service          {public_url}  (API docs: {public_url}/docs)",
        f"  moto endpoint    {sandbox.endpoint_url}",
        f"  IAM user         {world.user_name} in account {world.account_id}",
        f"  exposed key      {world.exposed_key_id}",
        f"  healthy key      {world.healthy_key_id} ({world.healthy_user_name})",
        f"  trail bucket     s3://{world.trail_bucket} ({world.trail_files} files)",
        f"  secrets          written to {_SANDBOX_DIR / 'env.json'} (mode 0600)",
        *(
            f"  export {name}={values[name]}"
            for name in ("RESPONDER_GITHUB_WEBHOOK_SECRET", "RESPONDER_API_TOKEN")
        ),
        f"next: responder demo --url {public_url}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _respond(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.sandbox:
            from responder.sandbox.service import Sandbox

            sandbox = stack.enter_context(Sandbox())
            assert sandbox.world is not None
            if args.access_key_id == "sandbox":
                args.access_key_id = sandbox.world.exposed_key_id
            values = {
                "RESPONDER_GITHUB_WEBHOOK_SECRET": uuid.uuid4().hex,
                "RESPONDER_API_TOKEN": uuid.uuid4().hex,
                "RESPONDER_GITHUB_TOKEN": uuid.uuid4().hex,
            }
            settings = _sandbox_settings(sandbox, values, public_url="http://127.0.0.1")
        else:
            settings = Settings.from_env()

        return _respond_with(settings, args)


def _respond_with(settings: Settings, args: argparse.Namespace) -> int:
    from responder.app import build_services
    from responder.store.models import SignalStatus, StepRecord

    configure_logging(level="warning", fmt=settings.log_format)
    services = build_services(settings)

    def show(step: StepRecord) -> None:
        print(f"{step.status.value:>9}  {step.name:<16} {step.message}", flush=True)

    outcome = services.engine.signal_received_flow(
        source="manual",
        delivery_id=uuid.uuid4().hex,
        kind="manual",
        status=SignalStatus.ACCEPTED,
        reason=args.reason,
        access_key_id=args.access_key_id,
        details={"reason": args.reason, "dry_run": args.dry_run},
        dry_run=args.dry_run,
        schedule=False,
    )
    assert outcome.incident is not None
    print(f"incident {outcome.incident.id} for {args.access_key_id}", flush=True)
    incident = services.runner.run(outcome.incident.id, on_step=show)
    print(f"{incident.status.value}: {incident.summary}")

    return 0 if incident.status.value in {"completed", "not_actionable"} else 1


def _report(args: argparse.Namespace) -> int:
    from responder.reports import (
        offline_report,
        render_csv,
        render_html,
        render_json,
        render_markdown,
        write_json,
    )

    if args.athena_table:
        report = _athena_report(args)
    else:
        report = offline_report(access_key_id=args.access_key_id, path=args.cloudtrail)
    renderers = {
        "json": render_json,
        "md": render_markdown,
        "html": render_html,
        "csv": render_csv,
    }
    if args.out and args.format == "json":
        # A report of 100,000 events is ~100 MB of JSON: stream it to the file.
        with args.out.open("w", encoding="utf-8") as out:
            write_json(report, out)
        print(f"wrote {args.out}", file=sys.stderr)
    elif args.out:
        args.out.write_text(renderers[args.format](report), encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(renderers[args.format](report))
    if not report["coverage"]["complete"]:
        print("responder: the report is incomplete (see its coverage)", file=sys.stderr)
        return 1

    return 0


def _athena_report(
    args: argparse.Namespace, gateway: Any = None, poll: float = 2.0
) -> dict[str, Any]:
    """Return the report of a key read with Athena from an organisation's trail."""
    from responder.aws.session import AwsGateway
    from responder.reports import build_report, key_type_of
    from responder.reports.athena import athena_report_records
    from responder.reports.sources import Coverage, Window

    if gateway is None:
        settings = Settings.from_env()
        gateway = AwsGateway(
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            max_attempts=settings.aws_max_attempts,
        )
    end = utcnow()
    start = end - timedelta(days=args.days)
    window = Window(start, end)
    records, notes = athena_report_records(
        gateway.call,
        table=args.athena_table,
        seed_key=args.access_key_id,
        start=start,
        end=end,
        workgroup=args.athena_workgroup,
        output_location=args.athena_output,
        organization_id=args.organization_id,
        poll=poll,
    )
    coverage = Coverage(window=window)
    coverage.add_source(f"athena:{args.athena_table}")
    for note in notes:
        coverage.add_note(note)

    return build_report(
        access_key_id=args.access_key_id,
        owner=None,
        account_id=None,
        key_type=key_type_of(args.access_key_id),
        window=window,
        events=records,
        coverage=coverage,
        responder_actions=[],
        generated_at=end,
    )


def _validate(args: argparse.Namespace) -> int:
    from responder.exceptions import PlaybookValidationError
    from responder.playbooks.loader import load_playbooks

    directory = args.directory or Settings.from_env().playbooks_dir
    try:
        playbooks = load_playbooks(directory)
    except PlaybookValidationError as exc:
        for problem in exc.problems:
            print(f"invalid: {problem}", file=sys.stderr)
        return 1
    for name, playbook in sorted(playbooks.items()):
        steps = " -> ".join(step.name for step in playbook.steps)
        print(f"ok: {name} ({', '.join(playbook.signals)}): {steps}")

    return 0


def _demo(args: argparse.Namespace) -> int:
    from responder.sandbox.demo import run_demo

    values = dict(os.environ)
    state = _SANDBOX_DIR / "env.json"
    if "RESPONDER_GITHUB_WEBHOOK_SECRET" not in values and state.exists():
        values.update(json.loads(state.read_text(encoding="utf-8")))
    missing = [
        name
        for name in ("RESPONDER_GITHUB_WEBHOOK_SECRET", "RESPONDER_API_TOKEN")
        if not values.get(name)
    ]
    if missing:
        print(
            f"responder demo: set {' and '.join(missing)} (the sandbox prints them)",
            file=sys.stderr,
        )
        return 2

    return run_demo(
        url=args.url.rstrip("/"),
        webhook_secret=values["RESPONDER_GITHUB_WEBHOOK_SECRET"],
        api_token=values["RESPONDER_API_TOKEN"],
        aws_secret=values.get("RESPONDER_AWS_WEBHOOK_SECRET"),
        scanner_secret=values.get("RESPONDER_SCANNER_HMAC_SECRET"),
        timeout=args.timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
