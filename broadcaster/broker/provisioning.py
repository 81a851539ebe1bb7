"""Station and server accounts in Mosquitto, reconciled with the registry.

Invariant kept by this module: a station has a broker account (username = sid, client
id bound to ``st-{sid}``) and a role ``loa-st-{sid}`` if and only if it has a
:class:`~broadcaster.broker.models.StationCredential`; the account is disabled while the
station is (``stations.enabled``); the role grants exactly the station's topics:

- publish: its own ``state``, ``reported``, ``ack``, ``event``, ``telemetry``;
- subscribe (and receive): its own ``cmd`` and ``desired``, ``server/state``,
  ``grp/all/cmd`` and ``grp/{gid}/cmd`` for each of its groups; receiving anything
  else is denied, so leaving a group stops its commands at once.

The service's own account holds ``loa-server`` (subscribe ``{prefix}/st/#`` and
``server/state``; publish ``st/+/desired``, ``st/+/cmd``, ``grp/+/cmd`` and
``server/state``) and ``loa-broker-admin`` (the dynamic-security control topics).

Mosquitto disconnects every session of an account whose password or client id is set,
that is disabled or deleted, or (depending on the version) whose roles change: a rotated
or disabled station is cut off at once.  Role ACL changes apply to the next publish and
subscribe without a disconnect (2.0), so a station that joins a group is disconnected on
purpose (``setClientId`` to the same id) to re-subscribe; one that leaves a group keeps
its persistent subscription but the receive ACL stops the commands.  Changes to the
server's own roles may disconnect the service's connections too, so
:func:`ensure_server_account` only touches them when they differ.

Entry points: :func:`issue_credentials` (API and CLI), :func:`revoke_credentials`,
:func:`sync` (service start, after registry/group changes; cheap when nothing changed:
two database queries and one broker round trip).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcaster.broker import dynsec as ds
from broadcaster.broker.dynsec import Acl, AclType, ClientInfo, Command, Dynsec, RoleInfo
from broadcaster.broker.exceptions import (
    BrokerConnectionLost,
    DynsecCommandError,
    ReservedStationId,
)
from broadcaster.broker.hashing import hash_secret, new_secret
from broadcaster.broker.models import StationCredential
from firmware_bridge.topics import STATION_INBOUND, Topics
from kernel.db import utcnow
from stations import service as stations_service
from stations.models import ALL_GROUP, Station

__all__ = [
    "ADMIN_ROLE",
    "SERVER_ROLE",
    "STATION_ROLE_PREFIX",
    "BrokerView",
    "IssuedSecret",
    "StationAccess",
    "SyncReport",
    "admin_acls",
    "broker_view",
    "ensure_server_account",
    "issue_credentials",
    "plan_station",
    "plan_sync",
    "registry_access",
    "revoke_credentials",
    "server_acls",
    "station_acls",
    "station_client_id",
    "station_role",
    "sync",
]

log = logging.getLogger(__name__)

STATION_ROLE_PREFIX = "loa-st-"
SERVER_ROLE = "loa-server"
ADMIN_ROLE = "loa-broker-admin"
#: Above this many stations, read the whole broker state at once instead of per station.
_LIST_THRESHOLD = 20

_ALLOW_FIRST = 10  # priority of allow rules, checked before the catch-all deny


# --- what the broker should hold -------------------------------------------------------


def station_role(sid: str) -> str:
    """The role granting ``sid`` its topics."""
    return f"{STATION_ROLE_PREFIX}{sid}"


def station_client_id(sid: str) -> str:
    """The MQTT client id a station must connect with (protocol: ``st-{sid}``)."""
    return f"st-{sid}"


def station_acls(topics: Topics, sid: str, groups: Iterable[str]) -> frozenset[Acl]:
    """Exactly the topics station ``sid`` may use, given its groups (``all`` implied)."""
    acls = {Acl(AclType.PUBLISH_SEND, topics.station(sid, kind)) for kind in STATION_INBOUND}
    inbound = {topics.cmd(sid), topics.desired(sid), topics.server_state()}
    inbound |= {topics.group_cmd(gid) for gid in {ALL_GROUP, *groups}}
    for topic in inbound:
        acls.add(Acl(AclType.SUBSCRIBE_LITERAL, topic))
        acls.add(Acl(AclType.PUBLISH_RECEIVE, topic, priority=_ALLOW_FIRST))
    acls.add(Acl(AclType.PUBLISH_RECEIVE, "#", allow=False))
    return frozenset(acls)


def server_acls(topics: Topics) -> frozenset[Acl]:
    """The service account's topics."""
    p = topics.prefix
    publish = (f"{p}/st/+/desired", f"{p}/st/+/cmd", f"{p}/grp/+/cmd", topics.server_state())
    return frozenset(
        {Acl(AclType.PUBLISH_SEND, t) for t in publish}
        | {Acl(AclType.SUBSCRIBE_PATTERN, t) for t in (f"{p}/st/#", topics.server_state())}
    )


def admin_acls() -> frozenset[Acl]:
    """Administering the dynamic-security plugin (and nothing else)."""
    control = "$CONTROL/dynamic-security/#"
    return frozenset(
        Acl(kind, control)
        for kind in (AclType.PUBLISH_SEND, AclType.PUBLISH_RECEIVE, AclType.SUBSCRIBE_PATTERN)
    )


@dataclass(frozen=True, slots=True)
class StationAccess:
    """What the registry says about one station's broker access."""

    sid: str
    name: str
    enabled: bool
    groups: tuple[str, ...] = ()
    credentialed: bool = False


def registry_access(
    session: Session, *, sids: Collection[str] | None = None
) -> dict[str, StationAccess]:
    """Every station (or those named) with its groups and whether it holds credentials."""
    query = select(
        Station.id, Station.sid, Station.name, Station.enabled, StationCredential.id
    ).outerjoin(StationCredential, StationCredential.station_id == Station.id)
    if sids is not None:
        query = query.where(Station.sid.in_(list(sids)))
    rows = session.execute(query).all()
    groups = stations_service.station_groups(session)
    return {
        sid: StationAccess(
            sid=sid,
            name=name,
            enabled=bool(enabled),
            groups=tuple(groups.get(station_id, ())),
            credentialed=credential_id is not None,
        )
        for station_id, sid, name, enabled, credential_id in rows
    }


# --- what the broker holds ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerView:
    """Clients and roles read from the broker (all of them, or only those asked for)."""

    clients: Mapping[str, ClientInfo] = field(default_factory=dict)
    roles: Mapping[str, RoleInfo] = field(default_factory=dict)
    complete: bool = True


def broker_view(dynsec: Dynsec, sids: Collection[str] | None = None) -> BrokerView:
    """Read the broker in one round trip: everything, or a few stations' entries."""
    if sids is not None and len(sids) <= _LIST_THRESHOLD:
        commands: list[Command] = []
        for sid in sids:
            commands += [ds.get_client(sid), ds.get_role(station_role(sid))]
        replies = dynsec.execute(commands)
        ds.raise_for_errors(commands, replies, tolerate=("Client not found", "Role not found"))
        clients = {}
        roles = {}
        for reply in replies:
            if reply.ok and "client" in reply.data:
                client = ClientInfo.from_json(reply.data["client"])
                clients[client.username] = client
            elif reply.ok and "role" in reply.data:
                role = RoleInfo.from_json(reply.data["role"])
                roles[role.rolename] = role
        return BrokerView(clients=clients, roles=roles, complete=False)
    commands = [ds.list_clients(), ds.list_roles()]
    clients_reply, roles_reply = ds.run(dynsec, commands)
    return BrokerView(
        clients={
            c.username: c
            for c in (ClientInfo.from_json(d) for d in clients_reply.data.get("clients") or ())
        },
        roles={
            r.rolename: r
            for r in (RoleInfo.from_json(d) for d in roles_reply.data.get("roles") or ())
        },
    )


# --- planning (pure) ---------------------------------------------------------------------


def plan_station(
    access: StationAccess, view: BrokerView, topics: Topics, *, password: str | None = None
) -> list[Command]:
    """Commands bringing one station's role and account in line with ``access``.

    With a ``password`` the account is created or its password replaced; without one
    a missing account stays missing (the secret is not known any more).
    """
    sid = access.sid
    role = station_role(sid)
    want = station_acls(topics, sid, access.groups)
    commands: list[Command] = []
    have = view.roles.get(role)
    if have is None:
        commands.append(ds.create_role(role, want, textname=f"loa station {sid}"))
    elif have.acls != want:
        commands += ds.role_diff(role, have.acls, want)
    regrouped = have is not None and bool(
        {a for a in want - have.acls if a.acltype is AclType.SUBSCRIBE_LITERAL}
    )
    client = view.clients.get(sid)
    if client is None:
        if password is not None:
            commands.append(
                ds.create_client(
                    sid,
                    password,
                    clientid=station_client_id(sid),
                    roles=[role],
                    textname=access.name,
                )
            )
            if not access.enabled:
                commands.append(ds.disable_client(sid))
        return commands
    kicks = password is not None or (not client.disabled and not access.enabled)
    if client.clientid != station_client_id(sid) or (regrouped and not kicks):
        # setClientId disconnects the station: after joining a group it reconnects and
        # subscribes again, so a subscription refused before this sync gets through.
        commands.append(ds.set_client_id(sid, station_client_id(sid)))
    commands += [ds.remove_client_role(sid, r) for r in client.roles if r != role]
    if role not in client.roles:
        commands.append(ds.add_client_role(sid, role))
    if client.disabled and access.enabled:
        commands.append(ds.enable_client(sid))
    if password is not None:
        commands.append(ds.set_client_password(sid, password))
    if not client.disabled and not access.enabled:
        commands.append(ds.disable_client(sid))
    return commands


@dataclass
class SyncReport:
    """What a :func:`sync` found and did."""

    stations: int = 0
    """Stations holding credentials (checked against the broker)."""
    commands: Counter[str] = field(default_factory=Counter)
    """Dynamic-security commands sent, by name (empty when nothing changed)."""
    missing: list[str] = field(default_factory=list)
    """Stations with credentials in the database but no broker account: re-issue them."""
    server_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.commands) or self.server_changed

    def summary(self) -> str:
        if not self.changed and not self.missing:
            return f"{self.stations} station accounts in line with the registry; nothing to do"
        done = ", ".join(f"{n} x {c}" for c, n in sorted(self.commands.items())) or "no changes"
        text = f"{self.stations} station accounts checked: {done}"
        if self.server_changed:
            text += "; server roles updated"
        if self.missing:
            text += f"; {len(self.missing)} without a broker account (re-issue): "
            text += ", ".join(self.missing[:10]) + ("…" if len(self.missing) > 10 else "")
        return text


def plan_sync(
    wanted: Mapping[str, StationAccess],
    view: BrokerView,
    topics: Topics,
    *,
    protected: Collection[str] = (),
) -> tuple[list[Command], SyncReport]:
    """Commands reconciling every station's account and role with the registry.

    ``protected`` usernames (the service's own account) are never touched.
    """
    report = SyncReport()
    commands: list[Command] = []
    for sid in sorted(wanted):
        access = wanted[sid]
        if not access.credentialed or sid in protected:
            continue
        report.stations += 1
        commands += plan_station(access, view, topics)
        if sid not in view.clients:
            report.missing.append(sid)
    for username, client in sorted(view.clients.items()):
        if username in protected:
            continue
        is_station = username in wanted or any(
            r.startswith(STATION_ROLE_PREFIX) for r in client.roles
        )
        holder = wanted.get(username)
        if is_station and (holder is None or not holder.credentialed):
            commands.append(ds.delete_client(username))
    for rolename in sorted(view.roles):
        if not rolename.startswith(STATION_ROLE_PREFIX):
            continue
        owner = wanted.get(rolename.removeprefix(STATION_ROLE_PREFIX))
        if owner is None or not owner.credentialed:
            commands.append(ds.delete_role(rolename))
    report.commands.update(c["command"] for c in commands)
    return commands, report


# --- use cases ---------------------------------------------------------------------------


def ensure_server_account(
    dynsec: Dynsec, *, topics: Topics, username: str, view: BrokerView | None = None
) -> bool:
    """Give the service account exactly ``loa-server`` + ``loa-broker-admin``.

    Returns whether anything changed.  When the account holds the roles being changed,
    Mosquitto disconnects it (answers included); we reconnect and check the result.
    A service account that is not a dynamic-security client (authenticated otherwise)
    is left alone.
    """
    view = view or broker_view(dynsec)
    commands: list[Command] = []
    for role, want in ((SERVER_ROLE, server_acls(topics)), (ADMIN_ROLE, admin_acls())):
        have = view.roles.get(role)
        if have is None:
            commands.append(ds.create_role(role, want, textname="broadcaster service"))
        elif have.acls != want:
            commands += ds.role_diff(role, have.acls, want)
    client = view.clients.get(username)
    if client is None:
        log.warning("MQTT account %r is not a dynamic-security client; not checked", username)
        return bool(commands) and _apply_to_self(dynsec, commands, topics, username)
    commands += [
        ds.add_client_role(username, r) for r in (SERVER_ROLE, ADMIN_ROLE) if r not in client.roles
    ]
    if not commands:
        return False
    return _apply_to_self(dynsec, commands, topics, username)


def _apply_to_self(dynsec: Dynsec, commands: list[Command], topics: Topics, username: str) -> bool:
    try:
        ds.run(dynsec, commands)
    except BrokerConnectionLost:
        # Our own account's roles changed: Mosquitto kicked us before answering.
        dynsec.reconnect()
        after = broker_view(dynsec)
        for role, want in ((SERVER_ROLE, server_acls(topics)), (ADMIN_ROLE, admin_acls())):
            if role not in after.roles or after.roles[role].acls != want:
                raise DynsecCommandError(
                    "addRoleACL", "server role not updated", target=role
                ) from None
    log.info("updated the broker roles of the service account %r", username)
    return True


def sync(
    session: Session,
    dynsec: Dynsec,
    *,
    topics: Topics,
    server_account: str | None = None,
) -> SyncReport:
    """Reconcile every station's broker account and role with the registry.

    Idempotent; when nothing changed it costs two queries and one broker round trip
    and sends no command.  Call it at service start and after registry changes
    (stations enabled/disabled/deleted, group membership; ideally before publishing
    the desired states that name new groups).  With ``server_account`` (the service's
    MQTT username) the server roles are checked too.  The database is only read.
    """
    wanted = registry_access(session)
    view = broker_view(dynsec)
    protected = {server_account} if server_account else set()
    commands, report = plan_sync(wanted, view, topics, protected=protected)
    if commands:
        ds.run(dynsec, commands)
        log.info("broker sync: %s", report.summary())
    if server_account:
        report.server_changed = ensure_server_account(
            dynsec, topics=topics, username=server_account, view=view
        )
    return report


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A freshly issued station secret (shown once, never stored)."""

    sid: str
    password: str
    rotated: bool


def issue_credentials(
    session: Session,
    dynsec: Dynsec,
    stations: Sequence[Station],
    *,
    topics: Topics,
    issued_by: str,
    server_account: str | None = None,
    now: dt.datetime | None = None,
) -> list[IssuedSecret]:
    """Issue (or rotate) a secret for each station and provision it in the broker.

    The credential rows are written and flushed first, then the broker is changed;
    if the broker fails, the exception propagates and the caller's rollback leaves
    the database as it was (the caller commits, with its audit entry).  A rotation
    replaces the broker password, which disconnects the station's old session.
    """
    now = now or utcnow()
    for station in stations:
        if server_account and station.sid == server_account:
            raise ReservedStationId(station.sid)
    sids = [s.sid for s in stations]
    access = registry_access(session, sids=sids)
    existing = {
        c.station_id: c
        for c in session.scalars(
            select(StationCredential).where(
                StationCredential.station_id.in_([s.id for s in stations])
            )
        )
    }
    issued: list[IssuedSecret] = []
    for station in stations:
        secret = new_secret()
        record = existing.get(station.id)
        if record is None:
            session.add(
                StationCredential(
                    station_id=station.id,
                    secret_hash=hash_secret(secret),
                    created_at=now,
                    created_by=issued_by,
                )
            )
        else:
            record.secret_hash = hash_secret(secret)
            record.rotated_at = now
            record.rotated_by = issued_by
            record.rotations += 1
        issued.append(IssuedSecret(station.sid, secret, rotated=record is not None))
    session.flush()
    view = broker_view(dynsec, sids)
    commands: list[Command] = []
    for item in issued:
        commands += plan_station(access[item.sid], view, topics, password=item.password)
    ds.run(dynsec, commands)
    return issued


def revoke_credentials(session: Session, dynsec: Dynsec, station: Station) -> bool:
    """Delete a station's credentials and its broker account (disconnecting it).

    Returns whether there was anything to revoke.  Database first (flushed), then the
    broker; the caller commits.
    """
    record = session.scalar(
        select(StationCredential).where(StationCredential.station_id == station.id)
    )
    if record is not None:
        session.delete(record)
        session.flush()
    commands = [ds.delete_client(station.sid), ds.delete_role(station_role(station.sid))]
    replies = dynsec.execute(commands)
    ds.raise_for_errors(commands, replies, tolerate=("Client not found", "Role not found"))
    return record is not None or any(r.ok for r in replies)


def credential_of(session: Session, station: Station) -> StationCredential | None:
    """The station's credential record, if it has one."""
    return session.scalar(
        select(StationCredential).where(StationCredential.station_id == station.id)
    )
