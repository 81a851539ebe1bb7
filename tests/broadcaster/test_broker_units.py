"""Broker credentials without a broker: ACL sets, sync planning, hashing, bootstrap files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from broadcaster.broker import dynsec as ds
from broadcaster.broker import provisioning as prov
from broadcaster.broker.bootstrap import bootstrap, find_dynsec_plugin
from broadcaster.broker.dynsec import Acl, AclType, ClientInfo, RoleInfo
from broadcaster.broker.hashing import dynsec_password, hash_secret, new_secret, verify_secret
from broadcaster.settings import Settings
from firmware_bridge.mqtt_url import MqttUrl
from firmware_bridge.topics import Topics

T = Topics()


def _topics(acls: frozenset[Acl], kind: AclType, allow: bool = True) -> set[str]:
    return {a.topic for a in acls if a.acltype is kind and a.allow is allow}


def test_station_role_grants_exactly_its_topics() -> None:
    acls = prov.station_acls(T, "lbn-cau-tre", ["xa-loi-binh-nhon", "lbn-loa-thong-minh"])
    assert _topics(acls, AclType.PUBLISH_SEND) == {
        f"loa/v1/st/lbn-cau-tre/{leaf}"
        for leaf in ("state", "reported", "ack", "event", "telemetry")
    }
    inbound = {
        "loa/v1/st/lbn-cau-tre/cmd",
        "loa/v1/st/lbn-cau-tre/desired",
        "loa/v1/server/state",
        "loa/v1/grp/all/cmd",
        "loa/v1/grp/xa-loi-binh-nhon/cmd",
        "loa/v1/grp/lbn-loa-thong-minh/cmd",
    }
    assert _topics(acls, AclType.SUBSCRIBE_LITERAL) == inbound
    assert _topics(acls, AclType.PUBLISH_RECEIVE) == inbound
    # everything else is refused on delivery; allow rules are checked first
    (deny,) = [a for a in acls if not a.allow]
    assert (deny.acltype, deny.topic) == (AclType.PUBLISH_RECEIVE, "#")
    assert all(
        a.priority > deny.priority for a in acls if a.acltype is AclType.PUBLISH_RECEIVE and a.allow
    )
    # no wildcard grants, no pattern subscriptions
    assert not any("+" in a.topic for a in acls)
    assert not _topics(acls, AclType.SUBSCRIBE_PATTERN)


def test_roles_follow_the_topic_prefix() -> None:
    custom = Topics("tan-an/loa/v1")
    acls = prov.station_acls(custom, "bt-1", [])
    assert all(a.topic.startswith("tan-an/loa/v1/") or a.topic == "#" for a in acls)
    server = prov.server_acls(custom)
    assert _topics(server, AclType.PUBLISH_SEND) == {
        "tan-an/loa/v1/st/+/desired",
        "tan-an/loa/v1/st/+/cmd",
        "tan-an/loa/v1/grp/+/cmd",
        "tan-an/loa/v1/server/state",
    }
    assert _topics(server, AclType.SUBSCRIBE_PATTERN) == {
        "tan-an/loa/v1/st/#",
        "tan-an/loa/v1/server/state",
    }
    assert {a.topic for a in prov.admin_acls()} == {"$CONTROL/dynamic-security/#"}


def _access(
    sid: str, *, enabled: bool = True, groups: tuple[str, ...] = (), cred: bool = True
) -> prov.StationAccess:
    return prov.StationAccess(
        sid=sid, name=sid.upper(), enabled=enabled, groups=groups, credentialed=cred
    )


def _in_line(access: prov.StationAccess, *, disabled: bool = False) -> tuple[ClientInfo, RoleInfo]:
    role = prov.station_role(access.sid)
    return (
        ClientInfo(access.sid, clientid=f"st-{access.sid}", disabled=disabled, roles=(role,)),
        RoleInfo(role, prov.station_acls(T, access.sid, access.groups)),
    )


def _view(
    *pairs: tuple[ClientInfo, RoleInfo], extra_clients: tuple[ClientInfo, ...] = ()
) -> prov.BrokerView:
    return prov.BrokerView(
        clients={c.username: c for c, _ in pairs} | {c.username: c for c in extra_clients},
        roles={r.rolename: r for _, r in pairs},
    )


def test_plan_sync_does_nothing_when_in_line() -> None:
    a = _access("a-1", groups=("g1",))
    b = _access("b-1", enabled=False)
    server = ClientInfo("broadcaster", roles=(prov.ADMIN_ROLE, prov.SERVER_ROLE))
    view = _view(_in_line(a), _in_line(b, disabled=True), extra_clients=(server,))
    commands, report = prov.plan_sync({"a-1": a, "b-1": b}, view, T, protected={"broadcaster"})
    assert commands == []
    assert not report.changed
    assert report.stations == 2
    assert "nothing to do" in report.summary()


def test_plan_sync_reconciles_enabled_groups_and_orphans() -> None:
    a = _access("a-1", enabled=False, groups=("g2",))
    gone = _access("gone-1", cred=False)  # station exists, credentials revoked
    a_client, a_role = _in_line(_access("a-1", groups=("g1",)))
    orphan = ClientInfo("deleted-1", clientid="st-deleted-1", roles=("loa-st-deleted-1",))
    observer = ClientInfo("observer", roles=("watch",))
    view = prov.BrokerView(
        clients={c.username: c for c in (a_client, orphan, observer, ClientInfo("gone-1"))},
        roles={
            a_role.rolename: a_role,
            "loa-st-deleted-1": RoleInfo("loa-st-deleted-1"),
            "watch": RoleInfo("watch"),
        },
    )
    commands, report = prov.plan_sync({"a-1": a, "gone-1": gone}, view, T)
    names = [c["command"] for c in commands]
    assert {
        "command": "removeRoleACL",
        "rolename": "loa-st-a-1",
        "acltype": "subscribeLiteral",
        "topic": "loa/v1/grp/g1/cmd",
    } in commands
    assert any(c["command"] == "addRoleACL" and c["topic"] == "loa/v1/grp/g2/cmd" for c in commands)
    assert ds.disable_client("a-1") in commands
    assert ds.delete_client("deleted-1") in commands
    assert ds.delete_client("gone-1") in commands
    assert ds.delete_role("loa-st-deleted-1") in commands
    assert ds.delete_client("observer") not in commands  # not a station: left alone
    assert report.commands["deleteClient"] == 2
    assert names.index("disableClient") >= 0
    assert report.changed
    assert report.missing == []


def test_plan_station_creates_or_rotates_and_repairs() -> None:
    a = _access("a-1", enabled=False)
    created = prov.plan_station(a, prov.BrokerView(), T, password="s3cret")
    assert [c["command"] for c in created] == ["createRole", "createClient", "disableClient"]
    assert created[1]["clientid"] == "st-a-1"
    assert created[1]["roles"] == [{"rolename": "loa-st-a-1", "priority": -1}]
    # an account someone tampered with: wrong client id, extra role, enabled
    _client, role = _in_line(_access("a-1"))
    tampered = ClientInfo("a-1", clientid=None, roles=("admin", role.rolename))
    rotated = prov.plan_station(a, _view((tampered, role)), T, password="n3w")
    assert [c["command"] for c in rotated] == [
        "setClientId",
        "removeClientRole",
        "setClientPassword",
        "disableClient",
    ]
    # without a password a missing account is reported, not invented
    assert [c["command"] for c in prov.plan_station(a, prov.BrokerView(), T)] == ["createRole"]
    _, report = prov.plan_sync({"a-1": _access("a-1")}, prov.BrokerView(), T)
    assert report.missing == ["a-1"]


def test_secret_hashes() -> None:
    secret = new_secret()
    assert len(secret) >= 43
    assert new_secret() != secret
    encoded = hash_secret(secret)
    assert secret not in encoded
    assert encoded.startswith("pbkdf2-sha512$")
    assert verify_secret(secret, encoded)
    assert not verify_secret(secret + "x", encoded)
    assert not verify_secret(secret, "garbage")
    fields = dynsec_password("pw", iterations=101)
    assert fields["iterations"] == 101
    assert {"password", "salt"} <= fields.keys()


def test_station_url_hides_the_service_account() -> None:
    settings = Settings(mqtt_url="mqtt://broadcaster:pw@10.0.0.5:1883")
    assert settings.mqtt_station_url == "mqtt://10.0.0.5:1883"
    public = Settings(
        mqtt_url="mqtt://u:p@127.0.0.1", mqtt_public_url="mqtts://loa.tanan.gov.vn:8883"
    )
    assert public.mqtt_station_url == "mqtts://loa.tanan.gov.vn:8883"
    with pytest.raises(ValueError, match="credentials"):
        Settings(mqtt_public_url="mqtts://u:p@loa.tanan.gov.vn")


@pytest.mark.skipif(
    find_dynsec_plugin() is None, reason="mosquitto dynamic-security plugin missing"
)
def test_bootstrap_writes_private_files_and_is_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "mosquitto"
    first = bootstrap(directory, port=18830)
    assert set(first.written) == {first.config_path, first.dynsec_path, first.credentials_path}
    config = first.config_path.read_text()
    assert "listener 18830 127.0.0.1" in config
    assert "allow_anonymous false" in config
    assert f"plugin_opt_config_file {first.dynsec_path}" in config
    assert f"persistence_location {directory.resolve() / 'data'}/" in config
    assert f"log_dest file {directory.resolve() / 'mosquitto.log'}" in config
    for path in (first.config_path, first.dynsec_path, first.credentials_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    url = MqttUrl.parse(first.mqtt_url)
    assert (url.username, url.host, url.port) == ("broadcaster", "127.0.0.1", 18830)
    assert url.password
    assert len(url.password) >= 32
    assert f"BROADCASTER_MQTT_URL={first.mqtt_url}" in first.credentials_path.read_text()
    document = json.loads(first.dynsec_path.read_text())
    assert url.password not in first.dynsec_path.read_text()
    (client,) = document["clients"]
    assert {r["rolename"] for r in client["roles"]} == {prov.SERVER_ROLE, prov.ADMIN_ROLE}
    assert document["defaultACLAccess"]["publishClientSend"] is False
    assert document["defaultACLAccess"]["subscribe"] is False

    again = bootstrap(directory, port=19999)
    assert again.written == ()
    assert again.mqtt_url == first.mqtt_url
    assert again.port == 18830

    # --force: new service password, station accounts already provisioned are kept
    document["clients"].append({"username": "bt-1", "roles": [{"rolename": "loa-st-bt-1"}]})
    document["roles"].append({"rolename": "loa-st-bt-1", "acls": []})
    first.dynsec_path.write_text(json.dumps(document))
    forced = bootstrap(directory, port=18831, force=True)
    assert forced.mqtt_url != first.mqtt_url
    assert forced.port == 18831
    kept = json.loads(forced.dynsec_path.read_text())
    assert [c["username"] for c in kept["clients"]] == ["broadcaster", "bt-1"]
    assert {r["rolename"] for r in kept["roles"]} == {
        prov.SERVER_ROLE,
        prov.ADMIN_ROLE,
        "loa-st-bt-1",
    }
