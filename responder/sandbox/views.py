"""A local stand-in for the GitHub secret-scanning REST API, for the sandbox."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException

from responder.sandbox.service import SandboxWorld

__all__ = ["github_stand_in"]


def github_stand_in(world: SandboxWorld, token: str) -> APIRouter:
    """Return a router answering `GET .../secret-scanning/alerts/{number}`."""
    router = APIRouter(
        prefix="/_sandbox/github", tags=["sandbox"], include_in_schema=False
    )

    @router.get("/repos/{owner}/{repo}/secret-scanning/alerts/{number}")
    def get_alert(
        owner: str,
        repo: str,
        number: int,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if not hmac.compare_digest(
            (authorization or "").encode(), f"Bearer {token}".encode()
        ):
            raise HTTPException(401, detail="Bad credentials")
        alert = world.alerts.get(number)
        if alert is None:
            raise HTTPException(404, detail="Not Found")
        base = f"https://api.github.com/repos/{owner}/{repo}/secret-scanning/alerts"

        return {
            **alert,
            "url": f"{base}/{number}",
            "locations_url": f"{base}/{number}/locations",
        }

    return router
