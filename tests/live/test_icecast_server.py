"""Starting Icecast: it is only reported started when the server answering on its port
is the one just started (it knows this configuration's admin password).  A port another
server took between choosing and binding it used to pass for a running Icecast, and the
first live stream then found nothing there."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from broadcaster.live.icecast import IcecastServer, PortTaken, start_on_a_free_port, write_config
from tests.support.icecast import requires_icecast, running_icecast
from tests.support.mosquitto import free_port

pytestmark = requires_icecast


def test_a_port_held_by_another_program_is_refused(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        server = IcecastServer(write_config(tmp_path / "ice", port=port))
        with pytest.raises(PortTaken, match=str(port)):
            server.start()
        assert not server.running


def test_a_port_held_by_another_icecast_is_refused_and_that_one_keeps_running(
    tmp_path: Path,
) -> None:
    with running_icecast(tmp_path / "first") as first:
        second = IcecastServer(write_config(tmp_path / "second", port=first.port))
        with pytest.raises(PortTaken):
            second.start()
        assert not second.running
        # the first one still serves
        reply = httpx.get(f"{first.public_url}/status-json.xsl", timeout=5)
        assert reply.status_code == 200
        assert "icestats" in reply.text


def test_started_on_the_next_free_port_when_the_first_is_taken(tmp_path: Path) -> None:
    """`start_on_a_free_port` (the demo's and the tests' way to start it): the first port
    it is given is held by another program, so Icecast is refused there and started on
    the next one; when every port it is given is held, the last refusal is raised."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        offered = iter([taken, free_port()])
        server, setup = start_on_a_free_port(tmp_path / "ice", lambda: next(offered))
        try:
            assert setup.port != taken
            assert server.running
            reply = httpx.get(f"{setup.public_url}/status-json.xsl", timeout=5)
            assert reply.status_code == 200
            assert "icestats" in reply.text
        finally:
            server.stop()

        with pytest.raises(PortTaken, match=str(taken)):
            start_on_a_free_port(tmp_path / "again", lambda: taken, attempts=2)
