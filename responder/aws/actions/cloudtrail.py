"""The blast-radius report step: what the key did, from CloudTrail."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from responder.aws.actions.base import Action, ActionContext, StepResult
from responder.exceptions import AwsCallFailed
from responder.reports import build_report, collect_events
from responder.reports.posture import gather_posture, suggest_least_privilege
from responder.reports.sources import (
    Window,
    find_minting_record,
    minted_key,
    s3_caller,
    scrub_secrets,
)
from responder.store.models import StepStatus

__all__ = ["BlastRadiusReport", "SessionOriginTrace", "trail_source"]

# How far back a chain of sessions is followed (a session that assumed a role that
# assumed a role...) before the trace stops and says so.
_MAX_CHAIN = 5
# STS calls that hand out temporary keys, searched in LookupEvents by name.
_MINTING_EVENTS = ("AssumeRole", "GetSessionToken", "GetFederationToken")
_LOOKUP_PAGES = 20

log = structlog.get_logger(__name__)


class ReportOptions(BaseModel):
    """Options of `blast-radius-report`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int | None = Field(
        None, ge=1, le=3650, description="Days back; the setting's value if unset."
    )


def trail_source(ctx: ActionContext, account_id: str) -> str | None:
    """Return `s3://bucket/prefix` of the account's trail files, or `None`."""
    bucket, prefix = ctx.settings.trail_bucket, ""
    if bucket is None:
        trails = ctx.aws("cloudtrail", "DescribeTrails").get("trailList", [])
        with_bucket = [trail for trail in trails if trail.get("S3BucketName")]
        if not with_bucket:
            return None
        bucket = str(with_bucket[0]["S3BucketName"])
        prefix = str(with_bucket[0].get("S3KeyPrefix") or "")
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    return f"s3://{bucket}/{prefix}AWSLogs/{account_id}/CloudTrail/"


class BlastRadiusReport(Action):
    """Build and store the CloudTrail blast-radius report of the exposed key.

    Reads LookupEvents in every enabled region (management events) and the trail's
    files in S3 (data events too), over a fixed window ending now. Regions or
    files that could not be read are listed in the report's coverage, never left
    silently empty. Runs in dry runs too: it only reads::

        - name: report
          action: blast-radius-report
          always: true
    """

    name = "blast-radius-report"
    Options = ReportOptions
    permissions = (
        "cloudtrail:LookupEvents",
        "cloudtrail:DescribeTrails",
        "ec2:DescribeRegions",
        "s3:ListBucket",
        "s3:GetObject",
        "iam:ListAccessKeys",
        "iam:ListMFADevices",
        "iam:ListAttachedUserPolicies",
        "iam:ListUserPolicies",
        "iam:GetUserPolicy",
        "iam:ListGroupsForUser",
        "iam:ListAttachedGroupPolicies",
        "iam:ListGroupPolicies",
        "iam:GetGroupPolicy",
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
    )

    def run(self, ctx: ActionContext) -> StepResult:
        """Return succeeded once the report is stored, with what it could not read."""
        options: ReportOptions = self.options  # type: ignore[assignment]
        settings = ctx.settings
        resolved = ctx.outputs.get("resolve", {})
        account_id = resolved.get("account_id") or ctx.incident.account_id
        if resolved.get("not_actionable") == "foreign_account":
            return StepResult(
                StepStatus.SKIPPED,
                f"account {account_id} is not managed: not ours to read",
            )
        if resolved.get("not_actionable") == "key_not_found":
            # A key IAM does not know (made up, or deleted) is read by no one here;
            # a flood of them must not hold a worker for a trail read each.
            return StepResult(
                StepStatus.SKIPPED,
                "IAM does not know the key: no report (build one offline if needed)",
            )

        end = ctx.now()
        days = options.window_days or settings.report_window_days
        start = settings.report_start or end - timedelta(days=days)
        source = None
        if account_id:
            try:
                source = trail_source(ctx, account_id)
            except AwsCallFailed as exc:
                log.warning("trail_lookup_failed", error_code=exc.error_code)
        regions: list[str] | None = list(settings.regions) or None
        if not settings.lookup_events:
            regions = []

        events, coverage = collect_events(
            ctx.gateway,
            access_key_ids=[ctx.incident.access_key_id],
            start=start,
            end=end,
            regions=regions,
            trail_source=source,
            interval=settings.lookup_events_interval,
            sleep=ctx.sleep,
        )
        if not settings.lookup_events:
            coverage.add_note("LookupEvents was not read (turned off in settings).")
        if source is None:
            coverage.add_note("No trail bucket found: data events were not read.")
        user = resolved.get("user_name")
        posture = None
        if user and resolved.get("key_type") == "long-term":
            posture = gather_posture(
                ctx.aws,
                user_name=str(user),
                access_key_id=ctx.incident.access_key_id,
                now=end,
            )
        report = build_report(
            access_key_id=ctx.incident.access_key_id,
            owner=user,
            account_id=account_id,
            key_type=resolved.get("key_type"),
            window=Window(start, end),
            events=events,
            coverage=coverage,
            responder_actions=_responder_actions(ctx),
            generated_at=ctx.now(),
            incident_id=ctx.incident.id,
            posture=posture,
            exposure_start=ctx.incident.created_at,
        )
        if posture is not None:
            # What the key did before anyone knew it leaked, as a policy to review.
            report["least_privilege"] = suggest_least_privilege(
                report["events"],
                before=ctx.incident.created_at,
                current_policies=[
                    *posture.get("attached_policies", []),
                    *posture.get("inline_policies", []),
                ],
                access_key_id=ctx.incident.access_key_id,
            )
        ctx.store.save_report(incident_id=ctx.incident.id, report=report)

        summary: dict[str, Any] = report.get("summary", {})
        incomplete = sorted(coverage.regions_incomplete)
        message = (
            f"report built from {len(events)} events"
            f" ({summary.get('failed', 0)} failed calls)"
        )
        if incomplete:
            message += f"; INCOMPLETE for {', '.join(incomplete)}"

        return StepResult(
            StepStatus.SUCCEEDED,
            message,
            outputs={"events": len(events), "regions_incomplete": incomplete},
        )


def _responder_actions(ctx: ActionContext) -> list[dict[str, Any]]:
    return [
        {
            "at": entry.to_dict()["at"],
            "service": entry.service,
            "operation": entry.operation,
            "target": entry.target,
            "request_id": entry.request_id,
            "outcome": entry.outcome,
        }
        for entry in ctx.store.list_audit(incident_id=ctx.incident.id)
    ]


class SessionOriginTrace(Action):
    """Find where a temporary key came from, and open the minting key's incident.

    Looks for the `AssumeRole`, `GetSessionToken` or `GetFederationToken` record
    whose response handed out the key, in the trail files and else in
    LookupEvents (us-east-1, where global STS calls are recorded). If a long-term
    key minted it, that key leaked too (or its holder is the attacker): its
    incident is opened, or joined if it has one. A session minted by another
    session is followed up to five links. Reads only::

        - name: trace
          action: session-origin-trace
          needs: [resolve]
    """

    name = "session-origin-trace"
    permissions = (
        "cloudtrail:LookupEvents",
        "cloudtrail:DescribeTrails",
        "s3:ListBucket",
        "s3:GetObject",
    )

    def run(self, ctx: ActionContext) -> StepResult:
        """Return the chain of sessions that led to the key, oldest last."""
        account_id = ctx.outputs.get("resolve", {}).get("account_id")
        source = None
        if account_id:
            try:
                source = trail_source(ctx, str(account_id))
            except AwsCallFailed as exc:
                log.warning("trail_lookup_failed", error_code=exc.error_code)
        chain: list[dict[str, Any]] = []
        current = ctx.incident.access_key_id

        for _ in range(_MAX_CHAIN):
            record = self._minting_record(ctx, current, source)
            if record is None:
                break
            identity = record.get("userIdentity") or {}
            caller = identity.get("accessKeyId")
            chain.append(
                {
                    "access_key_id": current,
                    "minted_by": caller,
                    "event_name": record.get("eventName"),
                    "event_time": record.get("eventTime"),
                    "caller_type": identity.get("type"),
                    "caller_arn": identity.get("arn"),
                    "source_ip": record.get("sourceIPAddress"),
                }
            )
            if not isinstance(caller, str) or not caller.startswith("ASIA"):
                break
            current = caller

        origin = chain[-1]["minted_by"] if chain else None
        outputs: dict[str, Any] = {"chain": chain, "origin_key": origin}
        if not chain:
            return StepResult(
                StepStatus.SUCCEEDED,
                "no record of the call that minted this session was found in the"
                " trail or LookupEvents (90 days); its origin is unknown",
                outputs=outputs,
            )
        message = " <- ".join(
            f"{link['access_key_id']} ({link['event_name']} by"
            f" {link['caller_arn'] or link['minted_by']})"
            for link in chain
        )
        if isinstance(origin, str) and origin.startswith("AKIA"):
            related = None
            if ctx.open_related is not None and not ctx.dry_run:
                related = ctx.open_related(
                    origin,
                    f"long-term key {origin} minted session"
                    f" {ctx.incident.access_key_id} (incident {ctx.incident.id})",
                )
            outputs["origin_incident"] = related
            message += f"; long-term key {origin} minted it"
            message += f": incident {related}" if related else " (no incident opened)"

        return StepResult(StepStatus.SUCCEEDED, message, outputs=outputs)

    def _minting_record(
        self, ctx: ActionContext, key_id: str, source: str | None
    ) -> dict[str, Any] | None:
        if source is not None:
            record = find_minting_record(
                source, key_id, s3_call=s3_caller(gateway=ctx.gateway)
            )
            if record is not None:
                return record
        if not ctx.settings.lookup_events:
            return None

        for event_name in _MINTING_EVENTS:
            params: dict[str, Any] = {
                "LookupAttributes": [
                    {"AttributeKey": "EventName", "AttributeValue": event_name}
                ],
                "MaxResults": 50,
            }
            for _ in range(_LOOKUP_PAGES):
                try:
                    page = ctx.aws("cloudtrail", "LookupEvents", **params)
                except AwsCallFailed as exc:
                    log.warning("minting_lookup_failed", error_code=exc.error_code)
                    return None
                for item in page.get("Events") or []:
                    text = item.get("CloudTrailEvent") or ""
                    if key_id not in text:
                        continue
                    try:
                        record = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and minted_key(record) == key_id:
                        return scrub_secrets(record)
                if not page.get("NextToken"):
                    break
                params["NextToken"] = page["NextToken"]
                ctx.sleep(ctx.settings.lookup_events_interval)

        return None
