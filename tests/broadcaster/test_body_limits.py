"""Body limits per route, enforced before parsing and, past a login's size, before
authentication (issue 15, defect 5 and the chunked-upload item of defect 8).

Against a real uvicorn server over raw sockets, so "before the body is read" is what
the server does with bytes it has not been sent: it answers after the headers alone.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from audio_library.settings import AudioSettings
from broadcaster.app import create_app
from broadcaster.runtime import Role as ProcessRole
from broadcaster.settings import Settings
from kernel.security import Role
from tests.api import make_user
from tests.support.live import start_server
from tests.support.mosquitto import free_port

MiB = 1024 * 1024
PART_HEAD = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[int]:
    yield from serve(settings, AudioSettings(max_upload_bytes=2 * MiB))


@pytest.fixture
def default_server(settings: Settings, tmp_path: Path) -> Iterator[int]:
    yield from serve(settings, AudioSettings())  # uploads up to 200 MiB


def serve(settings: Settings, audio: AudioSettings) -> Iterator[int]:
    app = create_app(settings, audio_settings=audio, role=ProcessRole.API)
    port = free_port()
    uvicorn_server, thread = start_server(app, port)
    try:
        yield port
    finally:
        uvicorn_server.should_exit = True
        thread.join(10)


def exchange(port: int, head: str, body_chunks: list[bytes] | None = None) -> tuple[int, bytes]:
    """Send a request head (and optionally some body bytes); return status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1"))
        for chunk in body_chunks or []:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head_bytes.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            rest += piece
        return status, rest


def request_head(path: str, *, length: int | None, token: str | None = None, ctype: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {ctype}"]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n\r\n"


def chunked(total: int, size: int = 256 * 1024, first: bytes = b"") -> list[bytes]:
    """``first`` then ``total`` bytes of filler, in HTTP/1.1 chunked framing."""
    out = [f"{len(first):x}\r\n".encode() + first + b"\r\n"] if first else []
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        out.append(f"{n:x}\r\n".encode() + b"a" * n + b"\r\n")
        sent += n
    out.append(b"0\r\n\r\n")
    return out


def test_a_huge_json_body_is_refused_from_its_headers_alone(default_server: int) -> None:
    """150 MiB of JSON to a JSON route under /api/v1/media with no token: before, the
    whole /api/v1/media prefix accepted 200 MiB and it was buffered before the 401
    (+446 MiB RSS).  Now the route's own limit (1 MiB) answers 413 before any byte."""
    status, body = exchange(
        default_server,
        request_head("/api/v1/media/tts", length=150 * MiB, ctype="application/json"),
    )
    assert status == 413
    assert b"message_vi" in body


def test_a_large_upload_from_an_unknown_sender_is_refused_before_its_body(server: int) -> None:
    """The upload route takes 2 MiB here, but not from someone who has not logged in:
    401 after the headers, nothing buffered."""
    status, body = exchange(
        server,
        request_head("/api/v1/media", length=MiB, ctype="multipart/form-data; boundary=x"),
    )
    assert status == 401
    assert b"message_vi" in body
    status, _ = exchange(
        server,
        request_head(
            "/api/v1/media", length=MiB, token="bct_forged", ctype="multipart/form-data; boundary=x"
        ),
    )
    assert status == 401


def test_chunked_bodies_over_the_limit_get_413_not_400(
    server: int, session_factory: sessionmaker[Session]
) -> None:
    headers = make_user(session_factory, "uploader", Role.ADMIN)
    token = headers["Authorization"].split(" ", 1)[1]
    # an upload streamed in chunks past the route's limit (multipart parser running)
    status, body = exchange(
        server,
        request_head(
            "/api/v1/media", length=None, token=token, ctype="multipart/form-data; boundary=x"
        ),
        chunked(3 * MiB, first=PART_HEAD),
    )
    assert status == 413, body
    assert b"message_vi" in body
    # a JSON route streamed in chunks past 1 MiB
    status, _ = exchange(
        server,
        request_head("/api/v1/areas", length=None, token=token, ctype="application/json"),
        chunked(2 * MiB),
    )
    assert status == 413
    # an anonymous chunked body past a login's size: 401
    status, _ = exchange(
        server,
        request_head("/api/v1/media", length=None, ctype="multipart/form-data; boundary=x"),
        chunked(MiB),
    )
    assert status == 401


def test_logins_and_small_bodies_still_work(server: int) -> None:
    status, _ = exchange(
        server,
        request_head("/api/v1/auth/token", length=27, ctype="application/x-www-form-urlencoded"),
        [b"username=nobody&password=x1"],
    )
    assert status == 401  # read and refused by the login itself (wrong password)
