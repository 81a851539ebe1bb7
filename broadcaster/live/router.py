"""Live paging API: the microphone WebSocket and live relays of a stream URL.

``WS /api/v1/live/audio``: authenticate with the session cookie (the dashboard; the
``Origin`` must be ours) or ``Authorization: Bearer``; send one JSON text frame
``{"targets": ..., "tier": "live"|"emergency", "title": ...}``; the service answers
``{"type": "ready", "stations": N}`` and then takes binary frames of audio (WebM/Opus
from MediaRecorder, or anything ffmpeg reads); ``{"type": "live", "broadcast_id":
..., "stream_url": ...}`` once the stations are sent the play.  ``{"type": "stop"}``,
closing the socket, or no audio for ``BROADCASTER_LIVE_IDLE_S`` ends the session and
stops every station.  Errors come as ``{"type": "error", ...problem document}`` and
the socket closes (code 1008 for refused input, 1011 for a server-side failure).

``POST /api/v1/live/relays``: relay a stream URL live to the targets (ends when the
stream ends, at ``max_s``, or when the broadcast is stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect, status
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from audio_library.dependencies import LibraryDep
from broadcaster.auth import service as auth_service
from broadcaster.auth.dependencies import COOKIE_NAME
from broadcaster.db import read_session
from broadcaster.dispatch.wake import wake
from broadcaster.live.service import Icecast, LiveStart, RelayStart
from broadcaster.live.sessions import Encoder, LiveRun, Relays
from broadcaster.web.errors import code_for, loc_of, status_for
from kernel.dependencies import CurrentPrincipal, SessionDep
from kernel.errors import DomainError, InvalidInput, PermissionDeniedError, Unauthenticated
from kernel.security import Principal

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/live", tags=["live"])
socket_router = APIRouter(prefix="/api/v1/live")

#: How long the browser may take to send its first audio (microphone permission).
FIRST_AUDIO_S = 20.0
MAX_FRAME = 256 * 1024


def relays_of(app: Any) -> Relays:
    relays: Relays | None = getattr(app.state, "live_relays", None)
    if relays is None:
        relays = app.state.live_relays = Relays()
    return relays


def _run(app: Any, library: Any, principal: Principal, data: LiveStart) -> LiveRun:
    settings = app.state.settings
    return LiveRun(
        factory=app.state.sessionmaker,
        library=library,
        icecast=Icecast.from_settings(settings),
        principal=principal,
        data=data,
        max_s=data.max_s or settings.live_max_s,
        wake=lambda: wake(app),
    )


@router.post("/relays", status_code=status.HTTP_201_CREATED)
async def start_relay(
    data: RelayStart,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    library: LibraryDep,
) -> dict[str, Any]:
    """Relay a live stream (``url``) to the targets now, through the streaming server.

    Answers once the stations are sent the play: the broadcast id, the number of
    stations and the stream they play.  Stop it with ``POST /api/v1/broadcasts/{id}/stop``.
    """
    # the relay's own short transactions follow; none is held while the stream opens
    await asyncio.to_thread(session.commit)
    run = _run(request.app, library, principal, data)
    await relays_of(request.app).start(run)
    return {
        "live_session": run.session_id,
        "broadcast_id": run.broadcast_id,
        "stations": run.stations,
        "stream_url": run.stream_url,
    }


@router.get("/config")
def live_config(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Whether live paging is configured, and the longest session."""
    settings = request.app.state.settings
    return {
        "enabled": settings.live_icecast_url is not None,
        "max_s": settings.live_max_s,
        "idle_s": settings.live_idle_s,
    }


def _principal_of(websocket: WebSocket) -> Principal:
    """The account of a WebSocket: bearer header or session cookie (same origin only)."""
    header = websocket.headers.get("authorization")
    token_text: str | None = None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token_text = value.strip()
    if token_text is None:
        token_text = websocket.cookies.get(COOKIE_NAME)
        origin = websocket.headers.get("origin")
        if token_text and (not origin or urlsplit(origin).netloc != websocket.headers.get("host")):
            raise PermissionDeniedError(
                "cross-site WebSocket refused", message_vi="Yêu cầu từ trang khác bị từ chối"
            )
    if not token_text:
        raise Unauthenticated("authentication required", message_vi="Cần đăng nhập")
    with read_session(websocket.app.state.sessionmaker) as session:
        token = auth_service.resolve_token(session, token_text)
        if token is None:
            raise Unauthenticated(
                "invalid, expired or revoked token", message_vi="Phiên đăng nhập không hợp lệ"
            )
        return auth_service.principal_for(session, token.user, token)


def _problem(exc: DomainError) -> dict[str, Any]:
    detail: Any = exc.message
    if isinstance(exc, InvalidInput):
        detail = [{"loc": loc_of(exc), "msg": exc.message, "type": "invalid"}]
    body: dict[str, Any] = {
        "type": "error",
        "title": "live session refused",
        "status": status_for(exc),
        "detail": detail,
        "code": code_for(exc),
    }
    if exc.message_vi:
        body["message_vi"] = exc.message_vi
    return body


async def _send_last(websocket: WebSocket, frame: dict[str, Any], code: int = 1000) -> None:
    """Send a last frame and close, unless the browser is already gone."""
    if websocket.application_state is not WebSocketState.CONNECTED:
        return
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_json(frame)
        await websocket.close(code)


async def _refuse(websocket: WebSocket, problem: dict[str, Any], code: int = 1008) -> None:
    await _send_last(websocket, problem, code)


def _start_of(frame: str | None) -> LiveStart:
    try:
        return LiveStart.model_validate_json(frame or "")
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(
            f"the first frame must be the session as JSON: {first['msg']}",
            field=tuple(str(part) for part in first["loc"]),
            message_vi="Thông tin phiên phát trực tiếp không hợp lệ",
        ) from exc


@socket_router.websocket("/audio")
async def live_audio(websocket: WebSocket) -> None:
    """The operator's microphone, live to the targets (see the module docstring)."""
    await websocket.accept()
    try:
        principal = await asyncio.to_thread(_principal_of, websocket)
        first = await asyncio.wait_for(websocket.receive_text(), FIRST_AUDIO_S)
        run = _run(websocket.app, websocket.app.state.media_library, principal, _start_of(first))
        stations = await run.precheck()
    except DomainError as exc:
        await _refuse(websocket, _problem(exc))
        return
    except (TimeoutError, WebSocketDisconnect, KeyError):
        await _refuse(
            websocket,
            _problem(InvalidInput("no session frame", message_vi="Chưa nhận được thông tin phiên")),
        )
        return
    await websocket.send_json({"type": "ready", "stations": stations})
    encoder = Encoder(run.icecast, run.mount, title=run.data.title or "Phát trực tiếp")
    await encoder.start_pipe()
    reason = "ended"
    try:
        reason = await _pump(websocket, run, encoder)
    except DomainError as exc:
        reason = f"error: {exc.message}"
        await _refuse(websocket, _problem(exc))
    except Exception as exc:
        log.exception("live session %s failed", run.session_id)
        reason = f"error: {type(exc).__name__}"
        await _refuse(
            websocket,
            _problem(DomainError(reason, message_vi="Lỗi máy chủ khi phát trực tiếp")),
            code=1011,
        )
    finally:
        await encoder.close()
        await run.end(reason)
    await _send_last(websocket, {"type": "ended", "reason": reason})


async def _pump(websocket: WebSocket, run: LiveRun, encoder: Encoder) -> str:
    """Feed the encoder until the session ends; the reason."""
    idle_s = websocket.app.state.settings.live_idle_s
    on_air: asyncio.Task[None] | None = None
    watch: asyncio.Task[str] | None = None
    try:
        while True:
            if on_air is not None and on_air.done():
                on_air.result()  # raises if the stream never reached the server
                if watch is None:
                    await websocket.send_json(
                        {
                            "type": "live",
                            "broadcast_id": run.broadcast_id,
                            "stations": run.stations,
                            "stream_url": run.stream_url,
                        }
                    )
                    watch = asyncio.create_task(run.watch(encoder))
            if watch is not None and watch.done():
                return watch.result()
            timeout = idle_s if on_air is not None else FIRST_AUDIO_S
            try:
                message = await asyncio.wait_for(websocket.receive(), timeout)
            except TimeoutError:
                return f"no audio for {timeout:g} s"
            if message["type"] == "websocket.disconnect":
                return "browser disconnected"
            data = message.get("bytes")
            if data is not None:
                if len(data) > MAX_FRAME:
                    raise InvalidInput(
                        f"audio frame over {MAX_FRAME} bytes",
                        field="audio",
                        message_vi="Gói âm thanh quá lớn",
                    )
                if not encoder.alive:
                    raise InvalidInput(
                        f"the audio could not be encoded: {encoder.problem()}",
                        field="audio",
                        message_vi="Không đọc được âm thanh từ micrô",
                    )
                await encoder.write(data)
                if on_air is None:
                    on_air = asyncio.create_task(run.go_live(encoder, source="microphone"))
                continue
            if _is_stop(message.get("text")):
                return "stopped by the operator"
    finally:
        for task in (on_air, watch):
            if task is not None and not task.done():
                task.cancel()


def _is_stop(text: str | None) -> bool:
    if not text:
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("type") == "stop"
