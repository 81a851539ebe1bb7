"""Pure ASGI middleware: request body limits and security headers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


def content_security_policy(img_sources: Sequence[str] = ()) -> bytes:
    """The pages' Content Security Policy: everything from this site, images also from
    ``img_sources`` (the map's tile server, `tile_source`)."""
    images = " ".join(["'self'", "data:", *img_sources])
    return (
        f"default-src 'self'; img-src {images}; media-src 'self' blob: data:; "
        "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ).encode()


def tile_source(tile_url: str) -> str | None:
    """The CSP source of a map tile URL template (``https://{s}.tile.example.org/{z}/
    {x}/{y}.png`` → ``https://*.tile.example.org``); None when no tiles are configured."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url.replace("{s}", "tiles-subdomain"))
    host = (parts.netloc or "").replace("tiles-subdomain", "*")
    return f"{parts.scheme}://{host}"


def html_headers(img_sources: Sequence[str] = ()) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", content_security_policy(img_sources)),
    )


#: Largest body accepted before the sender is known: a login form is a few hundred bytes.
ANONYMOUS_MAX_BYTES = 16 * 1024

#: Says whether a request's headers carry valid credentials (bearer token or session
#: cookie); it only reads.
Authenticator = Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """The body limit of one route (``path`` exact, or a prefix ending with ``/``)."""

    method: str
    path: str
    max_bytes: int

    def matches(self, method: str, path: str) -> bool:
        if method != self.method:
            return False
        if self.path.endswith("/"):
            return path.startswith(self.path)
        return path == self.path or path == self.path + "/"


#: RFC 9457 media type of every error body.
PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, title: str, detail: str, code: str, message_vi: str) -> bytes:
    """An RFC 9457 problem document (plus ``code`` and ``message_vi``)."""
    return json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "message_vi": message_vi,
        },
        ensure_ascii=False,
    ).encode()


class BodyLimitMiddleware:
    """Per-route request body limits, enforced before anything parses the body.

    - The limit of a request is the first matching `RouteLimit` (uploads, imports),
      else ``max_bytes``.  A declared ``Content-Length`` over it is refused with 413
      before a byte is read; a chunked body is cut off with 413 as soon as it passes
      it (the application is told the client went away, and whatever it answers is
      dropped: a multipart parser's error must not turn the 413 into a 400).
    - Nothing larger than ``anonymous_max_bytes`` (a login) is read before the sender
      is known: past it, ``authenticator`` checks the credentials in the headers and
      an unknown sender gets 401 before the body is buffered (FastAPI reads and parses
      a body before it runs the route's authentication dependency).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        routes: Sequence[RouteLimit] = (),
        anonymous_max_bytes: int = ANONYMOUS_MAX_BYTES,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = list(routes)
        self.anonymous_max_bytes = anonymous_max_bytes
        self.authenticator = authenticator

    def limit_for(self, method: str, path: str) -> int:
        for route in self.routes:
            if route.matches(method, path):
                return route.max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope["method"], scope["path"])
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        declared = _content_length(headers)
        if declared is not None and declared > max_bytes:
            await _too_large(send, max_bytes)
            return
        known_sender = False
        if declared is not None and declared > self.anonymous_max_bytes:
            if not await self._authenticated(headers):
                await _unauthenticated(send)
                return
            known_sender = True
        received = 0
        refused = False  # we answered; the application's own answer is dropped
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, refused, known_sender
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            if received > max_bytes:
                refused = True
                if not response_started:
                    await _too_large(send, max_bytes)
                return {"type": "http.disconnect"}
            if received > self.anonymous_max_bytes and not known_sender:
                known_sender = await self._authenticated(headers)
                if not known_sender:
                    refused = True
                    if not response_started:
                        await _unauthenticated(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _authenticated(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        if self.authenticator is None:
            return True
        return await self.authenticator(headers)


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, max_bytes: int) -> None:
    body = problem_body(
        413,
        "Content Too Large",
        f"request body larger than {max_bytes} bytes",
        "body_too_large",
        f"Dữ liệu gửi lên quá lớn (tối đa {max_bytes} byte)",
    )
    await _answer(send, 413, body)


async def _unauthenticated(send: Send) -> None:
    body = problem_body(
        401,
        "Unauthorized",
        "authentication required before sending a body this large",
        "unauthenticated",
        "Cần đăng nhập",
    )
    await _answer(send, 401, body, [(b"www-authenticate", b"Bearer")])


class SecurityHeadersMiddleware:
    """Security headers on every response; the HTML ones (CSP) on pages, with images
    also allowed from ``img_sources`` (the configured map tile server)."""

    def __init__(self, app: ASGIApp, img_sources: Sequence[str] = ()) -> None:
        self.app = app
        self.html_headers = html_headers(img_sources)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = list(SECURITY_HEADERS)
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    extra.extend(self.html_headers)
                headers.extend((k, v) for k, v in extra if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
