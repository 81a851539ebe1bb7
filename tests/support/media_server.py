"""A tiny HTTP server for media files and relay streams, run in a thread by tests.

``server.add(data)`` publishes bytes under ``/media/{sha256}`` and returns the matching
loa/v1 ``media`` object (url, sha256, bytes, duration_ms). ``/stream/ok`` answers 200
with audio-like bytes; ``/stream/down`` answers 503. Every request is logged.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["LocalHTTPServer", "MediaServer"]


class LocalHTTPServer:
    """A `ThreadingHTTPServer` on 127.0.0.1 (a free port) served by a background thread;
    also a context manager (start, then stop)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MediaServer(LocalHTTPServer):
    """Serves registered byte strings over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                if path == "/stream/ok":
                    self._send(200, b"\xff\xfb" * 4096, "audio/mpeg")
                elif path.startswith("/media/") and path[7:] in server.files:
                    self._send(200, server.files[path[7:]], "audio/mpeg")
                else:
                    self._send(404 if not path.startswith("/stream/") else 503, b"no", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        super().__init__(Handler)

    def add(self, data: bytes, *, duration_ms: int | None = 1000) -> dict[str, Any]:
        """Serve ``data`` and return its loa/v1 media object."""
        sha = hashlib.sha256(data).hexdigest()
        self.files[sha] = data
        media: dict[str, Any] = {
            "url": f"{self.base_url}/media/{sha}?sig=test",
            "sha256": sha,
            "bytes": len(data),
            "content_type": "audio/mpeg",
        }
        if duration_ms is not None:
            media["duration_ms"] = duration_ms
        return media

    def hits(self, sha256: str) -> int:
        """How many GETs the file with this hash received."""
        return sum(1 for path in self.requests if path.startswith(f"/media/{sha256}"))
