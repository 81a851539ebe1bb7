"""A TCP front for a real broker that behaves like an MQTT 3.1.1-only broker.

It reads each client's CONNECT: protocol level 5 is refused the way a 3.1.1 broker does
(CONNACK with return code 1, "unacceptable protocol version", then close); anything
else is piped through to the real broker unchanged. Used to test the MQTT 5 -> 3.1.1
fallback against real Mosquitto behind it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

__all__ = ["Mqtt311Proxy"]


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> tuple[bytes, int]:
    """One MQTT packet and the length of its fixed header."""
    header = _read_exact(sock, 1)
    length_bytes = b""
    multiplier, length = 1, 0
    while True:
        byte = _read_exact(sock, 1)
        length_bytes += byte
        length += (byte[0] & 0x7F) * multiplier
        multiplier *= 128
        if not byte[0] & 0x80:
            break
    fixed = header + length_bytes
    return fixed + _read_exact(sock, length), len(fixed)


class Mqtt311Proxy:
    """Listens on a free port and forwards non-v5 clients to ``upstream``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self.refused_v5 = 0
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:{port}``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mqtt311Proxy:
        """Accept connections in a background thread."""
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close every socket and join the threads."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._track(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        try:
            packet, header_len = _read_packet(client)
        except (ConnectionError, OSError):
            return
        body = packet[header_len:]
        name_len = int.from_bytes(body[0:2], "big")
        level = body[2 + name_len]
        if level == 5:
            self.refused_v5 += 1
            with contextlib.suppress(OSError):
                client.sendall(b"\x20\x02\x00\x01")
                client.shutdown(socket.SHUT_RDWR)
            return
        upstream = socket.create_connection(self.upstream)
        self._track(upstream)
        upstream.sendall(packet)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(0.2):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
