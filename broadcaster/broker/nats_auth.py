"""Station accounts on a NATS Server cluster (its MQTT gateway), behind :class:`.dynsec.Dynsec`.

NATS Server has no dynamic-security plugin: its users and their permissions live in the
configuration, re-read on ``SIGHUP`` (``nats-server --signal reload``).  So this backend
keeps the same clients/roles/ACLs model :mod:`.provisioning` plans for Mosquitto, in a
JSON file beside the NATS include file, and answers the same dynamic-security commands
(:meth:`NatsAuth.execute`): every batch that changes something rewrites the
``authorization { users = [...] }`` include file every node reads, then signals each node
to reload.  :mod:`.provisioning` (issue, rotate, revoke, sync) is unchanged.

How the model maps onto NATS (MQTT topics are NATS subjects, ``/`` -> ``.``, ``+`` -> ``*``,
``#`` -> ``>``, see :func:`topic_subject`):

- a client is a NATS user (password bcrypt-hashed, ``allowed_connection_types: [MQTT]``:
  a station's secret does not open the NATS protocol port); a disabled client is left out,
  so it cannot connect and the reload closes its connections;
- ``publishClientSend`` ACLs become ``publish.allow``; ``subscribe*`` ACLs
  ``subscribe.allow``, plus ``$MQTT.sub.>``, the internal subjects NATS delivers QoS 1
  subscriptions on (an MQTT client cannot subscribe to ``$MQTT/...`` topics itself);
- ``publishClientReceive`` has no NATS counterpart: what a user may not subscribe to it
  never receives, and a reload drops subscriptions no longer permitted (leaving a group
  stops its commands);
- a user with no ACL gets an explicit deny-all (NATS 2.9.10 crashes on reload when a
  user without permissions meets retained MQTT messages);
- the client id binding (``st-{sid}``) is kept in the model but NATS cannot enforce it:
  a station may connect under another client id, but its permissions are those of its
  username, so it still reaches only its own topics.

Several processes (API replicas, the worker) may administer at once: each batch holds an
exclusive ``flock`` on ``<auth file>.lock`` while it reads, changes and writes.  The nodes
must all read the same file (one machine, or a shared/replicated directory; see the
README).  A node that is down is skipped; it reads the current file when it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import bcrypt

from broadcaster.broker.dynsec import AclType, Command, Reply
from broadcaster.broker.exceptions import BrokerUnavailable
from firmware_bridge.errors import ConfigError

__all__ = ["MQTT_DELIVERY_SUBJECTS", "NatsAuth", "render_authorization", "topic_subject"]

log = logging.getLogger(__name__)

MQTT_DELIVERY_SUBJECTS = "$MQTT.sub.>"
"""Where NATS delivers an MQTT client's QoS 1 subscriptions (JetStream consumers)."""

#: bcrypt cost of the passwords in the NATS file (4, bcrypt's minimum).  The secrets are
#: 256-bit random tokens (:func:`.hashing.new_secret`): no hash cost makes them easier
#: or harder to guess, the hash only keeps a copied file from revealing them.  The cost
#: is paid by a node at every CONNECT, so a cheap one keeps the reconnect storm after a
#: node loss (a third of the fleet at once) affordable: see bench_nats_auth.py.
BCRYPT_COST = 4

_NOT_FOUND_CLIENT = "Client not found"
_NOT_FOUND_ROLE = "Role not found"
_SUBSCRIBE = (AclType.SUBSCRIBE_LITERAL, AclType.SUBSCRIBE_PATTERN)
_READS = {"getClient", "getRole", "listClients", "listRoles"}


def topic_subject(topic: str) -> list[str]:
    """The NATS subjects an MQTT topic (filter) covers, as NATS's MQTT gateway maps them.

    ``loa/v1/st/x/ack`` -> ``loa.v1.st.x.ack``; ``+`` -> ``*``; ``a/#`` covers both ``a``
    and ``a.>`` (an MQTT ``#`` also matches its parent level).
    """
    if not topic or topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise ConfigError(f"topic {topic!r} has an empty level; NATS cannot map it")
    if " " in topic:
        raise ConfigError(f"topic {topic!r} holds a space; NATS cannot map it")
    levels = [level.replace(".", "//") for level in topic.split("/")]
    if levels[-1] == "#":
        parent = ".".join("*" if lv == "+" else lv for lv in levels[:-1])
        return [parent, f"{parent}.>"] if parent else [">"]
    return [".".join("*" if lv == "+" else lv for lv in levels)]


def _permissions(acls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    publish: set[str] = set()
    subscribe: set[str] = set()
    for acl in acls:
        if not acl.get("allow", True):
            continue  # NATS denies whatever is not allowed
        kind = AclType(str(acl["acltype"]))
        topic = str(acl["topic"])
        if topic.startswith("$CONTROL/"):
            continue  # Mosquitto's administration topics: nothing to grant on NATS
        if kind is AclType.PUBLISH_SEND:
            publish.update(topic_subject(topic))
        elif kind in _SUBSCRIBE:
            subscribe.update(topic_subject(topic))
    if subscribe:
        subscribe.add(MQTT_DELIVERY_SUBJECTS)
    return {
        "publish": {"allow": sorted(publish)} if publish else {"deny": [">"]},
        "subscribe": {"allow": sorted(subscribe)} if subscribe else {"deny": [">"]},
    }


def render_authorization(state: dict[str, Any]) -> str:
    """The NATS ``authorization`` block for the clients and roles in ``state``."""
    roles = state.get("roles", {})
    users = []
    for username in sorted(state.get("clients", {})):
        client = state["clients"][username]
        if client.get("disabled") or not client.get("password_hash"):
            continue
        acls: list[dict[str, Any]] = []
        for rolename in client.get("roles", ()):
            acls += roles.get(rolename, {}).get("acls", [])
        users.append(
            {
                "user": username,
                "password": client["password_hash"],
                "permissions": _permissions(acls),
                "allowed_connection_types": ["MQTT"],
            }
        )
    # JSON is valid NATS configuration syntax; the include file holds exactly this block.
    body = json.dumps({"users": users}, indent=2, ensure_ascii=True)
    return "# written by broadcaster (broadcaster.broker.nats_auth); do not edit\n" + (
        f"authorization {body}\n"
    )


def _hash(password: str) -> str:
    salt = bcrypt.gensalt(BCRYPT_COST, prefix=b"2a")  # NATS recognises "$2a$"
    return bcrypt.hashpw(password.encode("utf-8"), salt).decode("ascii")


def _client_json(username: str, client: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": username,
        "clientid": client.get("clientid"),
        "disabled": bool(client.get("disabled")),
        "textname": client.get("textname"),
        "roles": [{"rolename": r, "priority": -1} for r in client.get("roles", ())],
    }


def _role_json(rolename: str, role: dict[str, Any]) -> dict[str, Any]:
    return {"rolename": rolename, "textname": role.get("textname"), "acls": role["acls"]}


def _runs_nats(pid: int) -> bool:
    """Whether process ``pid`` is a ``nats-server`` (its command line in ``/proc``; on a
    system without ``/proc`` the PID file is trusted)."""
    if not Path("/proc/self").exists():
        return True
    try:
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return program.rsplit(b"/", 1)[-1].startswith(b"nats-server")


class NatsAuth:
    """The :class:`.dynsec.Dynsec` interface over a NATS authorization include file."""

    def __init__(
        self, auth_file: Path, pid_files: Sequence[Path] = (), *, username: str | None = None
    ) -> None:
        self.auth_file = Path(auth_file)
        self.state_file = self.auth_file.with_name(self.auth_file.name + ".json")
        self.lock_file = self.auth_file.with_name(self.auth_file.name + ".lock")
        self.pid_files = [Path(p) for p in pid_files]
        self._username = username

    # --- the Dynsec interface ----------------------------------------------------------

    @property
    def username(self) -> str | None:
        return self._username

    def reconnect(self) -> None:
        """Nothing to reconnect: the nodes are administered through files and signals."""

    def execute(self, commands: Sequence[Command]) -> list[Reply]:
        """Apply ``commands`` like the dynamic-security plugin; reload the nodes on change.

        When no node runs, nothing is written and :class:`BrokerUnavailable` is raised
        (as with an unreachable Mosquitto: the caller rolls back).
        """
        with self._locked():
            state = self._load()
            replies = [self._apply(state, dict(command)) for command in commands]
            changed = any(
                r.ok and c["command"] not in _READS for c, r in zip(commands, replies, strict=True)
            )
            if changed:
                pids = self._live_pids()
                self._write(state)
                self._signal(pids)
        return replies

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Check the files are usable (what opening a connection is for Mosquitto)."""
        with self._locked():
            self._load()

    def close(self) -> None:
        """Nothing held between batches."""

    # --- set-up ------------------------------------------------------------------------

    def init(self, username: str, password: str, roles: dict[str, list[dict[str, Any]]]) -> None:
        """Create the file with the service account holding ``roles`` (name -> ACL JSON).

        The equivalent of ``mosquitto_ctrl dynsec init``: the service can then connect
        and reconcile every station itself.  Refuses to overwrite an existing file.
        """
        if self.state_file.exists():
            raise ConfigError(f"{self.state_file} exists already; not overwritten")
        state: dict[str, Any] = {
            "clients": {
                username: {
                    "password_hash": _hash(password),
                    "roles": sorted(roles),
                    "textname": "broadcaster service",
                }
            },
            "roles": {
                name: {"acls": acls, "textname": "broadcaster service"}
                for name, acls in roles.items()
            },
        }
        self.auth_file.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._write(state)

    def reload(self) -> int:
        """``SIGHUP`` every node that runs; returns how many were signalled."""
        return self._signal(self._live_pids())

    def _live_pids(self) -> list[int]:
        """The running nodes' process ids; raises when PID files are set and none runs."""
        pids = []
        for pid_file in self.pid_files:
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, 0)
            except (OSError, ValueError) as exc:
                log.warning("NATS node of %s is not running: %s", pid_file, exc)
                continue
            if not _runs_nats(pid):
                # a node that died without removing its PID file: the number may be
                # another process's now, which a SIGHUP would stop
                log.warning(
                    "NATS node of %s is not running: process %d is not nats-server", pid_file, pid
                )
                continue
            pids.append(pid)
        if self.pid_files and not pids:
            raise BrokerUnavailable(
                "no NATS node runs (BROADCASTER_MQTT_NATS_PID_FILES); nothing changed"
            )
        return pids

    def _signal(self, pids: Sequence[int]) -> int:
        signalled = 0
        for pid in pids:
            try:
                os.kill(pid, signal.SIGHUP)  # nats-server --signal reload
            except OSError as exc:  # it stopped meanwhile: it reads the file on start
                log.warning("NATS node %d not reloaded: %s", pid, exc)
                continue
            signalled += 1
        return signalled

    # --- the model -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            handle = self.lock_file.open("a+")
        except OSError as exc:
            raise BrokerUnavailable(f"cannot open {self.lock_file}: {exc}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise BrokerUnavailable(
                f"{self.state_file} does not exist: create it first (`broadcaster mqtt nats-init`)"
            ) from exc
        except (OSError, ValueError) as exc:
            raise BrokerUnavailable(f"cannot read {self.state_file}: {exc}") from exc
        state.setdefault("clients", {})
        state.setdefault("roles", {})
        return state

    def _write(self, state: dict[str, Any]) -> None:
        _atomic_write(self.state_file, json.dumps(state, indent=1, sort_keys=True) + "\n")
        _atomic_write(self.auth_file, render_authorization(state))

    def _apply(self, state: dict[str, Any], command: Command) -> Reply:
        name = str(command.get("command"))
        clients: dict[str, dict[str, Any]] = state["clients"]
        roles: dict[str, dict[str, Any]] = state["roles"]
        username = command.get("username")
        rolename = command.get("rolename")
        client = clients.get(str(username)) if username is not None else None
        role = roles.get(str(rolename)) if rolename is not None else None

        def fail(error: str) -> Reply:
            return Reply(name, error=error)

        if name == "listClients":
            return Reply(
                name, data={"clients": [_client_json(u, c) for u, c in sorted(clients.items())]}
            )
        if name == "listRoles":
            return Reply(name, data={"roles": [_role_json(r, v) for r, v in sorted(roles.items())]})
        if name == "getClient":
            return (
                Reply(name, data={"client": _client_json(str(username), client)})
                if client
                else fail(_NOT_FOUND_CLIENT)
            )
        if name == "getRole":
            return (
                Reply(name, data={"role": _role_json(str(rolename), role)})
                if role
                else fail(_NOT_FOUND_ROLE)
            )
        if name == "createRole":
            if role is not None:
                return fail("Role already exists")
            roles[str(rolename)] = {
                "acls": list(command.get("acls") or []),
                "textname": command.get("textname"),
            }
            return Reply(name)
        if name == "deleteRole":
            if role is None:
                return fail(_NOT_FOUND_ROLE)
            del roles[str(rolename)]
            for holder in clients.values():
                holder["roles"] = [r for r in holder.get("roles", ()) if r != rolename]
            return Reply(name)
        if name in ("addRoleACL", "removeRoleACL"):
            if role is None:
                return fail(_NOT_FOUND_ROLE)
            key = (command["acltype"], command["topic"])
            kept = [a for a in role["acls"] if (a["acltype"], a["topic"]) != key]
            if name == "removeRoleACL" and len(kept) == len(role["acls"]):
                return fail("ACL not found")
            if name == "addRoleACL":
                if len(kept) != len(role["acls"]):
                    return fail("ACL with this topic already exists")
                kept.append({k: command[k] for k in ("acltype", "topic", "allow", "priority")})
            role["acls"] = kept
            return Reply(name)
        if name == "createClient":
            if client is not None:
                return fail("Client already exists")
            wanted = [str(r["rolename"]) for r in command.get("roles") or ()]
            if any(r not in roles for r in wanted):
                return fail(_NOT_FOUND_ROLE)
            clients[str(username)] = {
                "password_hash": _hash(str(command["password"]))
                if command.get("password")
                else None,
                "clientid": command.get("clientid"),
                "textname": command.get("textname"),
                "roles": wanted,
                "disabled": False,
            }
            return Reply(name)
        if client is None:
            return fail(_NOT_FOUND_CLIENT) if name in _CLIENT_COMMANDS else fail("Unknown command")
        if name == "deleteClient":
            del clients[str(username)]
        elif name == "setClientPassword":
            client["password_hash"] = _hash(str(command["password"]))
        elif name == "setClientId":
            client["clientid"] = command.get("clientid") or None
        elif name in ("enableClient", "disableClient"):
            client["disabled"] = name == "disableClient"
        elif name == "addClientRole":
            if role is None:
                return fail(_NOT_FOUND_ROLE)
            if rolename not in client["roles"]:
                client["roles"] = [*client["roles"], str(rolename)]
        elif name == "removeClientRole":
            client["roles"] = [r for r in client["roles"] if r != rolename]
        else:
            return fail("Unknown command")
        return Reply(name)


_CLIENT_COMMANDS = {
    "deleteClient",
    "setClientPassword",
    "setClientId",
    "enableClient",
    "disableClient",
    "addClientRole",
    "removeClientRole",
}


def _atomic_write(path: Path, text: str) -> None:
    """Write ``path`` so that a node reloading meanwhile reads the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
