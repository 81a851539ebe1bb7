"""The replicated service (issue 14 item 5), end to end on PostgreSQL.

Two ``broadcaster serve --role api`` replicas behind a real HAProxy (started here on a
free port, health checks on ``/readyz``: :mod:`tests.support.haproxy`), plus two
``--role worker`` processes, one active and one standby (the PostgreSQL advisory lock
of ``dispatch.leader``), 108 simulated stations and a persistent Mosquitto whose every
message is recorded and schema-checked.  Every request of the tests, and every media
download of the stations, goes through the load balancer's one address.

- The dashboard's sign-in and live progress work through any replica: the session
  cookie one replica hands out opens the broadcast page on the other, and the progress
  stream (server-sent events) from each replica, and through the balancer, ends with
  every station SUCCEEDED.
- SIGKILL an API replica mid-broadcast, while a progress stream it serves is open and
  the API is being polled through the balancer: no request through the balancer
  fails (a failed connection is retried on the other replica, the health checks take
  the dead one out), the broken stream reconnects (as a browser's EventSource does) on
  the survivor and ends SUCCEEDED for all, a new broadcast is accepted, and nothing
  is lost: every station played each broadcast exactly once under its one ``cmd_id``.
- SIGKILL the active worker mid-broadcast (the command is out, acknowledgements are
  arriving): the standby takes over, the broadcast completes (108 SUCCEEDED), every
  station played it once, no second ``cmd_id``, and the play log holds 108 plays.

SQLite is a single process by design (README, "Processes"), so these tests need
PostgreSQL (``postgres_only``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broadcaster.auth.dependencies import COOKIE_NAME
from broadcaster.dispatch.models import Command
from tests.api import PASSWORD
from tests.support.haproxy import HAProxy, requires_haproxy
from tests.support.loa import wait_until
from tests.support.mosquitto import free_port, requires_mosquitto
from tests.support.service import ServiceProcess, run_cli
from tests.support.stack import (
    Stack,
    emergency_to_all,
    proof_of_play,
    published_ids,
    staged,
    started_plays,
)

# five service processes, HAProxy and 108 stations started and staged per test: on a
# loaded 2-core machine that alone can take minutes
pytestmark = [
    requires_mosquitto(),
    requires_haproxy(),
    pytest.mark.postgres_only,
    pytest.mark.timeout(900),
]

STARTUP_S = 180.0  # a process start on a loaded 2-core machine


@dataclass
class Cluster:
    """The replicated service: API replicas behind HAProxy, an active and a standby worker."""

    stack: Stack
    apis: dict[str, ServiceProcess]
    workers: list[ServiceProcess]
    balancer: HAProxy
    sids: list[str] = field(default_factory=list)

    def url(self, replica: str | None = None) -> str:
        """The balancer's address, or one replica's own."""
        return self.balancer.base_url if replica is None else self.apis[replica].base_url

    def active_worker(self) -> ServiceProcess:
        active = [w for w in self.workers if w.worker_state() == "active"]
        assert len(active) == 1, [w.worker_state() for w in self.workers]
        return active[0]

    def logs(self) -> str:
        return f"{self.stack.logs()}\n---- haproxy\n{self.balancer.log_tail(30)}"


@pytest.fixture
def cluster(deployments: Callable[..., Stack]) -> Iterator[Cluster]:
    stack = deployments(Stack, seed=lambda new: run_cli(["seed", "tan-an"], new.env))
    # one after the other: each process checks the schema at start-up
    workers = [stack.new_service("worker", port=free_port()).start()]
    workers[0].wait_ready(STARTUP_S, worker="active")
    apis = {}
    for name in ("api-0", "api-1"):
        apis[name] = stack.new_service("api", port=free_port()).start()
        apis[name].wait_ready(STARTUP_S, worker="api only")
    workers.append(stack.new_service("worker", port=free_port()).start())
    workers[1].wait_ready(STARTUP_S, worker="standby")
    # the balancer takes the deployment's public address: API calls and media downloads
    balancer = HAProxy(
        stack.tmp / "haproxy", stack.api_port, [(n, p.port) for n, p in apis.items()]
    ).start()
    try:
        balancer.wait_up(servers_up=2)
        made = Cluster(stack, apis, workers, balancer)
        made.sids = stack.sids()
        assert len(made.sids) == 108
        fleet = stack.fleet(made.sids)
        staged(stack, fleet, made.sids)
        yield made
    finally:
        balancer.stop()


def sign_in(base_url: str) -> str:
    """The dashboard's sign-in form on ``base_url``; the session cookie it sets."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        answer = http.post(
            "/dang-nhap",
            data={"username": "admin", "password": PASSWORD, "next": "/"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        cookie = answer.cookies.get(COOKIE_NAME)
        assert cookie, answer.headers
        return cookie


@dataclass
class ProgressFollower:
    """A browser's EventSource on ``/api/v1/broadcasts/{id}/events`` with the session
    cookie: reads ``progress`` events until ``done``, reconnecting when the stream
    breaks (what a browser does), and notes which replica served each connection."""

    base_url: str
    cookie: str
    broadcast_id: int
    reconnect: bool = True
    replicas: list[str] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    broken: int = 0
    done: dict[str, Any] | None = None
    error: str | None = None
    connected: threading.Event = field(default_factory=threading.Event)

    def run(self, deadline_s: float = 120.0) -> None:
        deadline = time.monotonic() + deadline_s
        url = f"{self.base_url}/api/v1/broadcasts/{self.broadcast_id}/events"
        while self.done is None and time.monotonic() < deadline:
            try:
                with httpx.stream(
                    "GET", url, cookies={COOKIE_NAME: self.cookie}, timeout=30
                ) as answer:
                    if answer.status_code != 200:
                        self.error = f"{answer.status_code}: {answer.read()!r}"
                        return
                    self.replicas.append(answer.headers.get("x-replica", "direct"))
                    self.connected.set()
                    event = ""
                    for line in answer.iter_lines():
                        if line.startswith("event: "):
                            event = line.removeprefix("event: ")
                        elif line.startswith("data: "):
                            data = json.loads(line.removeprefix("data: "))
                            if event == "progress":
                                self.progress.append(data)
                            elif event == "done":
                                self.done = data
                                return
            except httpx.HTTPError:
                pass
            self.broken += 1
            if not self.reconnect:
                return
            time.sleep(0.5)  # EventSource's retry delay is in this range
        if self.done is None and self.error is None:
            self.error = "no `done` event in time"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    @property
    def last(self) -> dict[str, Any]:
        assert self.progress, f"no progress event ({self.error})"
        return self.progress[-1]


def _all_succeeded(cluster: Cluster, broadcast: dict[str, Any]) -> dict[str, Any]:
    with cluster.stack.http() as http:
        progress: dict[str, Any] = wait_until(
            lambda: (p := cluster.stack.progress(http, broadcast["id"]))["finished"] == 108 and p,
            timeout_s=120,
            what=f"every target of {broadcast['cmd_id']} final\n{cluster.logs()}",
        )
    assert progress["by_status"]["SUCCEEDED"] == 108, progress
    return progress


def _played_once_under_one_id(cluster: Cluster, broadcast: dict[str, Any]) -> None:
    cmd_id = broadcast["cmd_id"]
    fleet = cluster.stack.fleets[0]
    plays = started_plays(fleet, cmd_id)
    assert plays == dict.fromkeys(cluster.sids, 1), {s: n for s, n in plays.items() if n != 1}
    assert {cmd for _, cmd in published_ids(cluster.stack, broadcast["title"])} == {cmd_id}
    with cluster.stack.factory() as session:
        stored = session.scalars(select(Command).where(Command.broadcast_id == broadcast["id"]))
        assert [c.cmd_id for c in stored] == [cmd_id]


def test_sign_in_and_live_progress_through_any_replica_survive_an_api_replica_kill(
    cluster: Cluster,
) -> None:
    # a session from one replica opens the dashboard on the other and through the balancer
    cookie = sign_in(cluster.url("api-0"))
    with cluster.stack.http() as http:
        made = emergency_to_all(cluster.stack, http, "Thử: bản sao API bị tắt giữa bản tin")
    for base in (cluster.url("api-1"), cluster.url()):
        page = httpx.get(
            f"{base}/phat-thanh/{made['id']}", cookies={COOKIE_NAME: cookie}, timeout=30
        )
        assert page.status_code == 200, page.text[:500]
        assert made["title"] in page.text
    assert sign_in(cluster.url())
    assert sign_in(cluster.url("api-1"))

    # live progress: one stream from each replica directly, and streams through the
    # balancer until one of them is served by api-0, the replica about to die
    direct = {
        name: ProgressFollower(cluster.url(name), cookie, made["id"], reconnect=False)
        for name in cluster.apis
    }
    followers = list(direct.values())
    through: list[ProgressFollower] = []
    for _ in range(6):
        follower = ProgressFollower(cluster.url(), cookie, made["id"])
        through.append(follower)
        followers.append(follower)
        follower.start()
        assert follower.connected.wait(30), follower.error
        if follower.replicas == ["api-0"]:
            break
    assert any(f.replicas == ["api-0"] for f in through), [f.replicas for f in through]
    for follower in direct.values():
        follower.start()
    for follower in direct.values():
        assert follower.connected.wait(30), follower.error

    # the API polled through the balancer across the kill: every answer must be 200
    answers: list[tuple[int, str]] = []
    polling = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=cluster.url(), headers=cluster.stack.admin, timeout=30) as c:
            while not polling.is_set():
                try:
                    r = c.get(f"/api/v1/broadcasts/{made['id']}", params={"stations": "false"})
                    answers.append((r.status_code, r.headers.get("x-replica", "?")))
                except httpx.HTTPError as exc:
                    answers.append((0, repr(exc)))
                time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.5)
    cluster.apis["api-0"].kill()
    wait_until(
        lambda: cluster.balancer.server_states().get("api-0") == "DOWN",
        timeout_s=15,
        what="the health checks taking api-0 out",
    )
    # the first broadcast completes across the kill; only then a new one, through the
    # balancer (an equal-priority play while the first still plays is REJECTED `busy` by
    # the stations, PROTOCOL.md rule 4: on a loaded machine the first may still be playing)
    _all_succeeded(cluster, made)
    with cluster.stack.http() as http:
        second = emergency_to_all(cluster.stack, http, "Thử: sau khi một bản sao API tắt")
    _all_succeeded(cluster, second)
    polling.set()
    poller.join(30)
    wait_until(
        lambda: all(f.done is not None or f.error is not None or f.broken for f in followers),
        timeout_s=60,
        what="every progress stream ended",
    )

    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed
    assert {replica for _, replica in answers} >= {"api-1"}
    # the survivor's own stream and every stream through the balancer end SUCCEEDED
    for follower in [direct["api-1"], *through]:
        assert follower.done is not None, (follower.replicas, follower.error, cluster.logs())
        assert follower.last["finished"] == 108, follower.last
        assert follower.last["by_status"]["SUCCEEDED"] == 108, follower.last
    # the stream api-0 served broke and came back on api-1
    victim = next(f for f in through if f.replicas[0] == "api-0")
    assert victim.broken >= 1, victim.replicas
    assert victim.replicas[-1] == "api-1", victim.replicas
    assert direct["api-0"].done is None
    assert direct["api-0"].broken == 1

    _played_once_under_one_id(cluster, made)
    _played_once_under_one_id(cluster, second)


def test_killing_the_active_worker_mid_broadcast_loses_nothing(cluster: Cluster) -> None:
    active = cluster.active_worker()
    standby = next(w for w in cluster.workers if w is not active)
    title = "Thử: máy xử lý chính tắt giữa bản tin"
    with cluster.stack.http() as http:
        made = emergency_to_all(cluster.stack, http, title)
    cmd_id = made["cmd_id"]
    # the command is out and acknowledgements are coming back: kill the active worker
    cluster.stack.recorder.wait_for("command", where=lambda d: d["cmd_id"] == cmd_id, timeout_s=15)
    cluster.stack.recorder.wait_for("ack", where=lambda d: d["cmd_id"] == cmd_id, timeout_s=15)
    active.kill()
    wait_until(
        lambda: standby.worker_state() == "active",
        timeout_s=30,
        what=f"the standby taking over\n{cluster.logs()}",
    )
    progress = _all_succeeded(cluster, made)
    assert progress["total"] == 108
    _played_once_under_one_id(cluster, made)
    # the acks and play events the stations sent across the hand-over were all stored
    proof_of_play(cluster.stack, cmd_id, 108)
