"""The application factory: the only place routers are assembled."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session, sessionmaker

from audio_library import router as media_router
from audio_library.service import MediaLibrary
from audio_library.settings import AudioSettings
from broadcaster import db
from broadcaster.alarms import router as alarms_router
from broadcaster.alerts import router as alerts_router
from broadcaster.auth import router as auth_router
from broadcaster.auth.dependencies import authenticate, header_authenticator, require_sign_in
from broadcaster.auth.signin_cache import SignInCache
from broadcaster.auth.usage import TokenUsage
from broadcaster.broker import router as broker_router
from broadcaster.dispatch import attention, broadcasts, playlist_router
from broadcaster.dispatch import router as dispatch_router
from broadcaster.dispatch.progress_hub import ProgressHub
from broadcaster.live import router as live_router
from broadcaster.reorg import router as reorg_router
from broadcaster.runtime import Role, Runtime
from broadcaster.settings import Settings
from broadcaster.web import errors, health, metrics, openapi, pages
from broadcaster.web.middleware import (
    BodyLimitMiddleware,
    RouteLimit,
    SecurityHeadersMiddleware,
    tile_source,
)
from broadcaster.web.timing import ServerTimingMiddleware
from broadcaster.web.validation import storable_text
from kernel.errors import DomainError
from schedules import router as schedules_router
from schedules import service as schedules_service
from stations import router as stations_router
from stations import service as stations_service

log = logging.getLogger(__name__)

API_DESCRIPTION = """
Hệ thống điều hành truyền thanh cơ sở thông minh — smart-loudspeaker broadcast scheduler.

Authenticate with `POST /api/v1/auth/token` (form fields `username`, `password`) and send
`Authorization: Bearer <token>`.
"""


def _make_attention_signal(factory: sessionmaker[Session], library: MediaLibrary) -> None:
    """The emergencies' attention signal in the media library (made once; identical
    bytes find the same asset later).  Without ffmpeg, emergencies go without it."""
    try:
        asset_id = attention.ensure_signal(factory, library)
    except (DomainError, OSError) as exc:
        log.warning("attention signal not made, emergencies play without it: %s", exc)
        return
    log.info("attention signal ready (media asset %s)", asset_id)


def body_limits(settings: Settings, audio_settings: AudioSettings) -> list[RouteLimit]:
    """Routes whose bodies may exceed ``BROADCASTER_MAX_REQUEST_BYTES`` (every other
    route, JSON ones under ``/api/v1/media`` included, keeps that limit)."""
    return [
        RouteLimit("POST", "/api/v1/media", audio_settings.max_upload_bytes + 64 * 1024),
        RouteLimit("POST", "/api/v1/stations/import", settings.max_import_bytes),
    ]


WARM_UP_PATH = "/.well-known/broadcaster-warm-up"
"""Matched by no route (404): asked for once at start-up, in process."""


async def warm_routes(app: FastAPI) -> int:
    """Ask the app, in process, for a path no route matches: looking for it builds what
    routing builds on first use (FastAPI 0.165 prepares each included router's routes, its
    dependency graphs, the first time a request reaches that router: about 100 ms for
    ours, which the first emergency of a fresh service would otherwise pay).  Returns
    the answer's status: 404 unless a route took the path (then routing stopped there)."""
    started = time.monotonic()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
    async with httpx.AsyncClient(transport=transport, base_url="http://warm-up") as client:
        status = (await client.get(WARM_UP_PATH)).status_code
    took_ms = 1000 * (time.monotonic() - started)
    log.info("routes prepared (%.0f ms, warm-up answered %d)", took_ms, status)
    return status


def prepare_way_out(factory: sessionmaker[Session]) -> int | None:
    """Read the fleet and build the whole-fleet route's statements before the first
    emergency needs them (`broadcasts.prepare_way_out`); how many routes were planned,
    or None when it could not be done (logged: the first emergency then does it)."""
    started = time.monotonic()
    try:
        with db.read_session(factory) as session:
            planned = broadcasts.prepare_way_out(session)
    except Exception:
        log.warning("the emergency's way out was not prepared at start-up", exc_info=True)
        return None
    took_ms = 1000 * (time.monotonic() - started)
    log.info("emergency way out prepared (%d routes, %.0f ms)", planned, took_ms)
    return planned


def _wait_quiet(app: FastAPI) -> None:
    """The progress hub's wait for the quiet moment after a fan-out (the runtime is made
    at start-up, after the hub)."""
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    if runtime is not None:
        runtime.wait_quiet()


def freeze_start_up_heap() -> int:
    """Collect, then freeze what is left (``gc.freeze``); how many objects were frozen.

    A started service holds a million objects that live as long as it does (modules,
    mappers, schemas, routes). Every full collection of CPython's cyclic collector
    looked at all of them: 200-300 ms during which no other Python thread ran, at the
    collector's moment, in the middle of an emergency's fan-out as well
    (``bench_broadcast.py``, 1,000 stations). Frozen, they are skipped: a full
    collection then took 10-60 ms. An object frozen here is still freed when its last
    reference goes; only a reference cycle among them would stay (nothing made at
    start-up is meant to die)."""
    started = time.monotonic()
    gc.collect()
    gc.freeze()
    count = gc.get_freeze_count()
    log.info(
        "start-up heap frozen: %d objects (%.0f ms)", count, 1000 * (time.monotonic() - started)
    )
    return count


class SpeechWarmUp:
    """Warms the audio process pool in the background at start-up; `/readyz` shows it
    (never as not ready: speech still works cold, only slower)."""

    def __init__(self) -> None:
        self.state = "not started"

    def start(self, library: MediaLibrary) -> None:
        threading.Thread(
            target=self._run, args=(library,), name="speech-warm-up", daemon=True
        ).start()

    def _run(self, library: MediaLibrary) -> None:
        self.state = "warming"
        started = time.monotonic()
        try:
            library.warm()
        except Exception as exc:  # speech then starts its processes on first use
            log.warning("audio process pool warm-up failed: %s", exc)
            self.state = f"cold ({type(exc).__name__})"
            return
        self.state = "warm"
        log.info("audio process pool warm (%.1f s)", time.monotonic() - started)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return True, {"audio_pool": self.state}


Authenticator = Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[bool]]


def any_sender(*checks: Authenticator) -> Authenticator:
    """A known sender for the body limit: a user's credentials or a CAP source's token."""

    async def check(headers: Sequence[tuple[bytes, bytes]]) -> bool:
        for one in checks:
            if await one(headers):
                return True
        return False

    return check


def create_app(
    settings: Settings | None = None,
    *,
    audio_settings: AudioSettings | None = None,
    role: Role = Role.ALL,
    migrate: bool = True,
    freeze_heap: bool = False,
) -> FastAPI:
    """The service. ``freeze_heap`` (`broadcaster serve`): once started, what is alive
    leaves the collector's sight (`freeze_start_up_heap`); for a process that runs only
    this app, not for one that makes many (tests)."""
    settings = settings or Settings()
    audio_settings = audio_settings or AudioSettings()
    engine = db.make_engine(settings.database_url)
    sessionmaker = db.make_sessionmaker(engine)
    media_library = MediaLibrary(
        audio_settings,
        root=settings.media_dir,
        url_secret=MediaLibrary.derive_secret(settings.secret_key.get_secret_value()),
        public_base_url=settings.public_base_url,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            db.upgrade(engine)
        with db.session_scope(sessionmaker) as session:
            stations_service.ensure_builtin_groups(session)
        log.info("broadcaster ready (%s)", engine.url.render_as_string(hide_password=True))
        media_library.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        if settings.emergency_attention:
            _make_attention_signal(sessionmaker, media_library)
        runtime = Runtime(
            settings, engine, sessionmaker, media_library, role, on_progress=progress.notify
        )
        app.state.runtime = runtime
        app.state.readiness["dispatch"] = runtime.readiness
        runtime.start()
        token_usage.start()
        if settings.route_warm_up:
            await warm_routes(app)
            if role is not Role.WORKER:
                prepare_way_out(sessionmaker)
        if role is not Role.WORKER and settings.speech_warm_up:
            # the first spoken emergency must not start the audio processes (4 s cold)
            speech.start(media_library)
        if freeze_heap:
            freeze_start_up_heap()
        try:
            yield
        finally:
            if freeze_heap:
                gc.unfreeze()
            await live_router.relays_of(app).stop_all()
            token_usage.stop()
            progress.stop()
            runtime.stop()
            media_library.shutdown()
            engine.dispose()

    app = FastAPI(
        title="broadcaster",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    speech = SpeechWarmUp()
    app.state.readiness = {"speech": speech.readiness}
    app.state.media_library = media_library
    app.state.asset_usage = [schedules_service.asset_users]
    app.state.areas = stations_service.AREA_DIRECTORY
    app.state.authenticate = authenticate  # for routes that also accept signed links
    token_usage = TokenUsage(sessionmaker)
    app.state.token_usage = token_usage
    app.state.signin_cache = SignInCache(settings.auth_cache_s)
    # one per process: every open progress stream waits on it (broadcaster.dispatch.progress_hub)
    progress = ProgressHub(sessionmaker, poll_s=settings.sse_poll_s, quiet=lambda: _wait_quiet(app))
    app.state.progress_hub = progress

    errors.install(app)
    tiles = tile_source(settings.map_tile_url)
    app.add_middleware(SecurityHeadersMiddleware, img_sources=[tiles] if tiles else [])
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        routes=body_limits(settings, audio_settings),
        authenticator=any_sender(
            header_authenticator(sessionmaker), alerts_router.token_authenticator(sessionmaker)
        ),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )

    # outermost: a route's Server-Timing counts from the request's arrival
    app.add_middleware(ServerTimingMiddleware)
    app.include_router(health.router)
    app.include_router(metrics.router)  # its own bearer token (BROADCASTER_METRICS_TOKEN)
    if role is Role.WORKER:
        return app  # a worker serves its health checks only
    # every string a request carries must be storable (no NUL): checked once, after
    # authentication, for every router (broadcaster.web.validation)
    public = [Depends(storable_text)]
    protected = [Depends(require_sign_in), *public]
    app.include_router(auth_router.public_router, dependencies=public)
    app.include_router(auth_router.router, dependencies=protected)
    # before the registry's /api/v1/areas/{code}
    app.include_router(reorg_router.router, dependencies=protected)
    app.include_router(stations_router.router, dependencies=protected)
    app.include_router(broker_router.router, dependencies=protected)
    app.include_router(media_router.router, dependencies=protected)
    app.include_router(media_router.public_router, dependencies=public)
    app.include_router(schedules_router.router, dependencies=protected)
    app.include_router(dispatch_router.router, dependencies=protected)
    app.include_router(playlist_router.router, dependencies=protected)
    app.include_router(alarms_router.router, dependencies=protected)
    app.include_router(live_router.router, dependencies=protected)
    # the microphone socket authenticates itself (cookie with same origin, or bearer)
    app.include_router(live_router.socket_router)
    app.include_router(alerts_router.router, dependencies=protected)
    # CAP ingest: its own integration token
    app.include_router(alerts_router.public_router, dependencies=public)
    # calendar feeds: login or signed link
    app.include_router(schedules_router.public_router, dependencies=public)
    # dashboard pages: read the session cookie themselves
    pages.install(app, dependencies=public)
    openapi.install(app)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="broadcaster API",
            # Swagger UI 5 (reads OpenAPI 3.1), vendored: static/vendor/swagger-ui
            swagger_js_url=f"{pages.STATIC_PREFIX}/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{pages.STATIC_PREFIX}/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="data:,",  # no request for an icon
        )

    return app
