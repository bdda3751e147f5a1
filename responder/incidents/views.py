"""The authenticated API: manual trigger, incidents, reports."""

from __future__ import annotations

import hmac
import re
import unicodedata
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from responder.reports import render_html, render_json, render_markdown
from responder.store.models import IncidentStatus, SignalStatus

__all__ = ["IncidentCreate", "require_token", "router"]

# The report page needs nothing but its own inline style.
_REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")


def require_token(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Refuse (401) a request without the configured bearer token."""
    expected = request.app.state.settings.api_token.get_secret_value()
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise HTTPException(
            401,
            detail=[{"msg": "missing or wrong bearer token", "type": "unauthorized"}],
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(
    prefix="/api/v1", tags=["incidents"], dependencies=[Depends(require_token)]
)


class IncidentCreate(BaseModel):
    """A manual exposure signal."""

    model_config = ConfigDict(extra="forbid")

    access_key_id: str = Field(description="The exposed key ID (AKIA... or ASIA...).")
    reason: str = Field("", max_length=1000, description="Why, for the timeline.")
    dry_run: StrictBool = Field(
        False, description="Say what would happen; change nothing (true or false)."
    )

    @field_validator("access_key_id")
    @classmethod
    def _key_shape(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            msg = (
                "access_key_id must be 20 characters: AKIA or ASIA followed by 16"
                f" uppercase letters or digits (got {len(value)} characters)"
            )
            raise ValueError(msg)
        return value


@router.post("/incidents", status_code=202, summary="Report an exposed key by hand")
def create_incident(
    request: Request,
    body: IncidentCreate,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    """Record a manual signal and open (or join) the key's incident."""
    engine = request.app.state.engine
    outcome = engine.signal_received_flow(
        source="manual",
        delivery_id=idempotency_key or uuid.uuid4().hex,
        kind="manual",
        status=SignalStatus.ACCEPTED,
        reason=body.reason or "manual trigger",
        access_key_id=body.access_key_id,
        details={"reason": body.reason, "dry_run": body.dry_run},
        dry_run=body.dry_run,
    )
    incident = outcome.incident
    if outcome.duplicate and outcome.signal.access_key_id != body.access_key_id:
        raise HTTPException(
            409,
            detail=[
                {
                    "msg": "Idempotency-Key was already used for another access key;"
                    " send this key with a new Idempotency-Key",
                    "type": "conflict",
                }
            ],
        )
    status_code = 200 if outcome.duplicate else 202

    return JSONResponse(
        {
            "signal_id": outcome.signal.id,
            "duplicate": outcome.duplicate,
            "incident": incident.to_dict() if incident else None,
            "links": _links(request, incident.id) if incident else {},
        },
        status_code=status_code,
    )


class ApprovalCreate(BaseModel):
    """A person's approval of the step an incident waits on."""

    model_config = ConfigDict(extra="forbid")

    approver: str = Field(
        min_length=1, max_length=200, description="Who approves (in the timeline)."
    )
    note: str = Field("", max_length=1000, description="Why, for the timeline.")

    @field_validator("approver")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # Control, format (bidi overrides) and line/paragraph separators would let
        # an approval record read as something else.
        if not value.strip() or any(
            unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp", "Cs"}
            for char in value
        ):
            msg = "approver must name a person: visible text, no control characters"
            raise ValueError(msg)
        return value.strip()


@router.post(
    "/incidents/{incident_id}/approve",
    summary="Approve the step an incident waits on",
    responses={404: {}, 409: {"description": "the incident is not waiting"}},
)
def approve_incident(
    request: Request, incident_id: str, body: ApprovalCreate
) -> JSONResponse:
    """Record who approved, then let the incident's playbook go on."""
    engine = request.app.state.engine
    try:
        incident = engine.approve_flow(
            incident_id, approver=body.approver, note=body.note
        )
    except LookupError:
        raise HTTPException(
            404, detail=[{"msg": f"no incident {incident_id}", "type": "not_found"}]
        ) from None
    except ValueError as exc:
        raise HTTPException(
            409, detail=[{"msg": str(exc), "type": "conflict"}]
        ) from None

    return JSONResponse(
        {"incident": incident.to_dict(), "links": _links(request, incident_id)},
        status_code=202,
    )


@router.get("/incidents", summary="List incidents, newest first")
def list_incidents(
    request: Request,
    status: IncidentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Return incidents, newest first."""
    store = request.app.state.store
    incidents = store.list_incidents(status=status, limit=limit)

    return {"incidents": [incident.to_dict() for incident in incidents]}


@router.get("/incidents/{incident_id}", summary="One incident with its steps")
def get_incident(request: Request, incident_id: str) -> dict[str, Any]:
    """Return the incident, its steps, signals, audit trail and timeline."""
    store = request.app.state.store
    incident = store.get_incident(incident_id=incident_id)
    if incident is None:
        raise HTTPException(
            404, detail=[{"msg": f"no incident {incident_id}", "type": "not_found"}]
        )

    return {
        **incident.to_dict(),
        "steps": [step.to_dict() for step in store.list_steps(incident_id=incident_id)],
        "signals": [s.to_dict() for s in store.list_signals(incident_id=incident_id)],
        "audit": [
            entry.to_dict() for entry in store.list_audit(incident_id=incident_id)
        ],
        "timeline": [e.to_dict() for e in store.list_timeline(incident_id=incident_id)],
        "links": _links(request, incident_id),
    }


@router.get("/incidents/{incident_id}/report", summary="The blast-radius report")
def get_report(
    request: Request,
    incident_id: str,
    format: Literal["json", "md", "html"] = "json",
) -> Response:
    """Return the report as JSON, Markdown or a self-contained HTML page."""
    store = request.app.state.store
    if store.get_incident(incident_id=incident_id) is None:
        raise HTTPException(
            404, detail=[{"msg": f"no incident {incident_id}", "type": "not_found"}]
        )
    report = store.get_report(incident_id=incident_id)
    if report is None:
        raise HTTPException(
            404,
            detail=[
                {
                    "msg": "the report is not built yet; try again shortly",
                    "type": "not_ready",
                }
            ],
        )

    if format == "md":
        return PlainTextResponse(render_markdown(report), media_type="text/markdown")
    if format == "html":
        return HTMLResponse(
            render_html(report),
            headers={"Content-Security-Policy": _REPORT_CSP},
        )

    return Response(render_json(report), media_type="application/json")


def _links(request: Request, incident_id: str) -> dict[str, str]:
    base = request.app.state.settings.public_url.rstrip("/")

    return {
        "incident": f"{base}/api/v1/incidents/{incident_id}",
        "report": f"{base}/api/v1/incidents/{incident_id}/report?format=html",
    }
