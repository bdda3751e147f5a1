"""The FastAPI application and the wiring of its parts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from responder import __version__
from responder.aws.accounts import AccountRouter
from responder.aws.session import AwsGateway
from responder.config import Settings
from responder.exceptions import ConfigError, SignalRejected
from responder.incidents.flows import Engine
from responder.incidents.views import router as api_router
from responder.notify import NotificationDispatcher, Notifier, SlackWebhookNotifier
from responder.playbooks.loader import load_playbooks
from responder.playbooks.runner import PlaybookRunner
from responder.signals.github import AlertLookup, AlertResolver, HttpxAlertLookup
from responder.signals.partner import PartnerKeyStore
from responder.signals.sns import CertificateCache, SnsVerifier, SubscriptionConfirmer
from responder.signals.views import Intake
from responder.signals.views import router as webhook_router
from responder.store.service import Store

__all__ = ["Services", "build_services", "create_app"]

log = structlog.get_logger(__name__)


@dataclass
class Services:
    """The long-lived parts one process shares."""

    settings: Settings
    store: Store
    gateway: AwsGateway
    runner: PlaybookRunner
    engine: Engine
    intake: Intake


def build_services(
    settings: Settings,
    *,
    gateway: AwsGateway | None = None,
    alert_lookup: AlertLookup | None = None,
    alert_resolver: AlertResolver | None = None,
    notifier: Notifier | None = None,
    http_transport: httpx.BaseTransport | None = None,
) -> Services:
    """Load playbooks, open the store and build the engine.

    Raises:
        PlaybookValidationError: a playbook is invalid; nothing was started.
    """
    playbooks = load_playbooks(settings.playbooks_dir)
    store = Store(settings.database)
    gateway = gateway or AwsGateway(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=settings.aws_max_attempts,
    )
    runner = PlaybookRunner(
        store=store,
        gateway=gateway,
        settings=settings,
        playbooks=playbooks,
        accounts=AccountRouter(settings=settings, home=gateway),
    )
    if alert_lookup is None and settings.github_token is not None:
        github = HttpxAlertLookup(
            api_url=settings.github_api_url,
            token=settings.github_token.get_secret_value(),
        )
        alert_lookup = github
        alert_resolver = alert_resolver or github
    if notifier is None and settings.notify_webhook_url is not None:
        notifier = SlackWebhookNotifier(
            settings.notify_webhook_url.get_secret_value(),
            httpx.Client(timeout=10.0, follow_redirects=False),
        )
    engine = Engine(
        settings=settings,
        store=store,
        runner=runner,
        playbooks=playbooks,
        alert_lookup=alert_lookup,
        alert_resolver=alert_resolver,
    )
    if notifier is not None:
        engine.notifications = NotificationDispatcher(
            notifier, on_result=engine.notification_recorded
        )

    # Certificates and public keys are fetched over verified TLS, never redirected.
    http = httpx.Client(timeout=5.0, follow_redirects=False, transport=http_transport)
    intake = Intake(
        sns_verifier=SnsVerifier(
            CertificateCache(http),
            max_age=timedelta(seconds=settings.sns_max_age_seconds),
        ),
        sns_confirmer=SubscriptionConfirmer(http),
        partner_keys=PartnerKeyStore(http, settings.github_api_url),
    )

    return Services(settings, store, gateway, runner, engine, intake)


def create_app(
    services: Services, *, extra_routers: Sequence[APIRouter] = ()
) -> FastAPI:
    """Return the application; it resumes unfinished incidents when it starts.

    Raises:
        ConfigError: the webhook secret or the API token is not configured.
    """
    settings = services.settings
    missing = [
        name
        for name, value in (
            ("RESPONDER_GITHUB_WEBHOOK_SECRET", settings.github_webhook_secret),
            ("RESPONDER_API_TOKEN", settings.api_token),
        )
        if value is None
    ]
    if missing:
        msg = f"refusing to start: set {' and '.join(missing)}"
        raise ConfigError(msg)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.engine.start()
        log.info(
            "service_started", version=__version__, database=str(settings.database)
        )
        yield
        # Queued incidents are not lost: they are resumed at the next start.
        services.engine.stop(wait=False)
        log.info("service_stopped")

    app = FastAPI(
        title="responder",
        version=__version__,
        summary="Contains leaked AWS access keys and reports what they did.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = services.store
    app.state.engine = services.engine
    app.state.intake = services.intake
    app.include_router(webhook_router)
    app.include_router(api_router)
    for router in extra_routers:
        app.include_router(router)

    @app.middleware("http")
    async def refuse_large_bodies(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # The webhooks also count streamed bytes; this covers every other route.
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "msg": f"body of {declared} bytes is over the"
                            f" {settings.max_body_bytes}-byte limit",
                            "type": "BodyTooLarge",
                        }
                    ]
                },
                status_code=413,
            )
        return await call_next(request)

    @app.middleware("http")
    async def bind_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request.headers.get("x-request-id") or uuid.uuid4().hex[:16],
            path=request.url.path,
        )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Same shape as FastAPI's, without echoing the input back.
        detail = [
            {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(SignalRejected)
    async def rejected(_request: Request, exc: SignalRejected) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"msg": str(exc), "type": type(exc).__name__}]},
            status_code=exc.status_code,
        )

    @app.get("/healthz", tags=["health"], summary="Liveness and store check")
    def healthz() -> dict[str, str]:
        services.store.list_incidents(limit=1)
        return {"status": "ok", "version": __version__}

    return app
