"""CAP 1.2 XML signatures (signxml): a source configured with a certificate must sign
its alerts; a missing or bad signature is refused with the reason, recorded, and
nothing airs.  Keys and certificates are made here with `cryptography`, the documents
signed with signxml as a sender would."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from lxml import etree
from signxml import XMLSigner

from tests.alerts.capdocs import box_polygon, flood_alert
from tests.alerts.test_api import alerts, broadcasts, send
from tests.api import ok

pytestmark = pytest.mark.usefixtures("tan_an")


def _identity(name: str) -> tuple[bytes, str]:
    """A private key (PEM) and its self-signed certificate (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pctt() -> tuple[bytes, str]:
    return _identity("PCTT Long An")


@pytest.fixture(scope="module")
def stranger() -> tuple[bytes, str]:
    return _identity("Không phải PCTT")


def _signed(document: bytes, identity: tuple[bytes, str]) -> bytes:
    key, cert = identity
    root = etree.fromstring(document)
    signed = XMLSigner().sign(root, key=key, cert=cert)
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def _signing_source(client: TestClient, admin: dict[str, str], cert: str) -> str:
    made = ok(
        client.post(
            "/api/v1/alert-sources",
            json={"name": "PCTT Long An (ký số)", "auto_air": True, "certificate": cert},
            headers=admin,
        ),
        201,
    )
    assert made["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    return str(made["token"])


def test_a_signed_alert_airs(
    client: TestClient, admin: dict[str, str], pctt: tuple[bytes, str]
) -> None:
    token = _signing_source(client, admin, pctt[1])
    body = _signed(flood_alert("LA-KY-1", polygon=box_polygon()), pctt)
    result = ok(send(client, token, body), 202)
    assert result["outcome"] == "aired"
    assert result["station_count"] > 0


def _tampered(document: bytes) -> bytes:
    """The signed document with its headline changed afterwards."""
    root = etree.fromstring(document)
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    headline = root.find("cap:info/cap:headline", ns)
    assert headline is not None
    headline.text = "Tin giả: không có lũ"
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _wrapped(document: bytes) -> bytes:
    """A signature-wrapping attempt: the signed alert hidden in an ``note`` of an
    unsigned alert that names other areas."""
    signed = etree.fromstring(document)
    outer = etree.fromstring(flood_alert("LA-KY-WRAP", geocode="phuong-3"))
    outer.append(signed.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    return bytes(etree.tostring(outer, xml_declaration=True, encoding="UTF-8"))


@pytest.mark.parametrize(
    ("make", "reason_vi"),
    [
        (lambda doc, me, other: doc, "thiếu chữ ký số"),
        (lambda doc, me, other: _signed(doc, other), "Chữ ký số của bản tin cảnh báo"),
        (lambda doc, me, other: _tampered(_signed(doc, me)), "Chữ ký số của bản tin cảnh báo"),
        (lambda doc, me, other: _wrapped(_signed(doc, me)), "Chữ ký số"),
    ],
    ids=["unsigned", "another-key", "tampered", "wrapped"],
)
def test_a_bad_signature_is_refused_recorded_and_nothing_airs(
    client: TestClient,
    admin: dict[str, str],
    pctt: tuple[bytes, str],
    stranger: tuple[bytes, str],
    make: Any,
    reason_vi: str,
) -> None:
    token = _signing_source(client, admin, pctt[1])
    body = make(flood_alert("LA-KY-2", polygon=box_polygon()), pctt, stranger)
    response = send(client, token, body)
    assert response.status_code == 403, response.text
    problem = response.json()
    assert reason_vi in problem["message_vi"]
    assert problem["code"]
    assert broadcasts(client, admin) == []
    [recorded] = alerts(client, admin)
    assert recorded["outcome"] == "refused"
    assert recorded["reason_vi"] == problem["message_vi"]
    assert "signature" in recorded["reason"]


def test_a_source_without_a_certificate_still_takes_unsigned_alerts_and_can_require_them(
    client: TestClient, admin: dict[str, str], auto_token: str, pctt: tuple[bytes, str]
) -> None:
    ok(send(client, auto_token, flood_alert("LA-KY-3", geocode="phuong-3")), 202)
    [source] = ok(client.get("/api/v1/alert-sources", headers=admin))
    assert source["certificate"] is None
    changed = ok(
        client.patch(
            f"/api/v1/alert-sources/{source['id']}",
            json={"certificate": pctt[1]},
            headers=admin,
        )
    )
    assert changed["certificate"]
    refused = send(client, auto_token, flood_alert("LA-KY-4", geocode="phuong-3"))
    assert refused.status_code == 403
    signed = _signed(flood_alert("LA-KY-5", geocode="phuong-3"), pctt)
    assert ok(send(client, auto_token, signed), 202)["aired"] is True
    # "" stops requiring signatures
    ok(
        client.patch(
            f"/api/v1/alert-sources/{source['id']}", json={"certificate": ""}, headers=admin
        )
    )
    ok(send(client, auto_token, flood_alert("LA-KY-6", geocode="phuong-3")), 202)
    entries = ok(
        client.get("/api/v1/audit", params={"action": "alert_source.update"}, headers=admin)
    )
    assert {e["after"].get("signed") for e in entries["items"]} == {True, False}


@pytest.mark.parametrize(
    "pem", ["not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
def test_a_bad_certificate_is_refused(client: TestClient, admin: dict[str, str], pem: str) -> None:
    response = client.post(
        "/api/v1/alert-sources",
        json={"name": "Sai chứng thư", "auto_air": True, "certificate": pem},
        headers=admin,
    )
    assert response.status_code == 422, response.text
    assert response.json()["message_vi"]
    assert "certificate" in [str(p) for p in response.json()["detail"][0]["loc"]]
