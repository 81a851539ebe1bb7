"""CAP 1.2 documents: parse safely, validate against the OASIS schema, read, write.

Parsing never resolves entities, loads a DTD or touches the network, refuses a
DOCTYPE outright and caps the size (`MAX_CAP_BYTES`).  Validation is the OASIS CAP 1.2
XML schema shipped in ``schema/CAP-v1.2.xsd``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lxml import etree

from broadcaster.alerts.vocabulary import CAP_NS

MAX_CAP_BYTES = 512 * 1024
SCHEMA_PATH = Path(__file__).with_name("schema") / "CAP-v1.2.xsd"
_NS = {"cap": CAP_NS}


class CapError(ValueError):
    """A document that is not a CAP 1.2 alert we can use; `message_vi` says why."""

    def __init__(self, message: str, message_vi: str) -> None:
        super().__init__(message)
        self.message = message
        self.message_vi = message_vi


@dataclass(frozen=True)
class Area:
    desc: str
    polygons: list[str] = field(default_factory=list)
    circles: list[str] = field(default_factory=list)
    geocodes: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Resource:
    desc: str
    mime_type: str
    uri: str | None
    deref_uri: str | None


@dataclass(frozen=True)
class Info:
    language: str
    event: str
    urgency: str
    severity: str
    certainty: str
    expires: dt.datetime | None
    headline: str | None
    description: str | None
    instruction: str | None
    parameters: list[tuple[str, str]]
    resources: list[Resource]
    areas: list[Area]


@dataclass(frozen=True)
class Alert:
    identifier: str
    sender: str
    sent: dt.datetime
    status: str
    msg_type: str
    scope: str
    references: list[tuple[str, str]]  # (sender, identifier) pairs
    infos: list[Info]

    def info(self) -> Info | None:
        """The Vietnamese info block if there is one, else the first."""
        for info in self.infos:
            if info.language.lower().startswith("vi"):
                return info
        return self.infos[0] if self.infos else None

    def expires(self) -> dt.datetime | None:
        """When every info block has expired (None: some block never expires)."""
        ends = [i.expires for i in self.infos]
        if not ends or any(e is None for e in ends):
            return None
        return max(e for e in ends if e is not None)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH), _parser()))


def parse_document(data: bytes) -> etree._Element:
    """The root of a well-formed, DOCTYPE-free document no larger than `MAX_CAP_BYTES`."""
    if len(data) > MAX_CAP_BYTES:
        raise CapError(
            f"the alert is larger than {MAX_CAP_BYTES} bytes",
            f"Bản tin cảnh báo vượt quá {MAX_CAP_BYTES // 1024} KiB",
        )
    try:
        tree = etree.fromstring(data, _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise CapError(f"not well-formed XML: {exc}", "Nội dung không phải XML hợp lệ") from exc
    if tree.docinfo.doctype:
        raise CapError(
            "a DOCTYPE is not allowed in a CAP alert", "Không chấp nhận khai báo DOCTYPE"
        )
    return tree.getroot()


def validate(root: etree._Element) -> None:
    """Raise `CapError` unless `root` is a CAP 1.2 alert valid against the OASIS schema."""
    checker = schema()
    if not checker.validate(root):
        first = checker.error_log.filter_from_errors()[0] if checker.error_log else None
        detail = f"line {first.line}: {first.message}" if first else "invalid"
        raise CapError(
            f"the alert does not conform to the CAP 1.2 schema ({detail})",
            "Bản tin không đúng lược đồ CAP 1.2",
        )


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(path, _NS)
    return found.text.strip() if found is not None and found.text else None


def _all(node: etree._Element, path: str) -> list[str]:
    return [n.text.strip() for n in node.findall(path, _NS) if n.text and n.text.strip()]


def _pairs(node: etree._Element, path: str) -> list[tuple[str, str]]:
    return [
        (_text(n, "cap:valueName") or "", _text(n, "cap:value") or "")
        for n in node.findall(path, _NS)
    ]


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _references(text: str | None) -> list[tuple[str, str]]:
    out = []
    for item in (text or "").split():
        parts = item.split(",")
        if len(parts) == 3:
            out.append((parts[0], parts[1]))
    return out


def _info(node: etree._Element) -> Info:
    expires = _text(node, "cap:expires")
    return Info(
        language=_text(node, "cap:language") or "en-US",
        event=_text(node, "cap:event") or "",
        urgency=_text(node, "cap:urgency") or "Unknown",
        severity=_text(node, "cap:severity") or "Unknown",
        certainty=_text(node, "cap:certainty") or "Unknown",
        expires=parse_time(expires) if expires else None,
        headline=_text(node, "cap:headline"),
        description=_text(node, "cap:description"),
        instruction=_text(node, "cap:instruction"),
        parameters=_pairs(node, "cap:parameter"),
        resources=[
            Resource(
                desc=_text(r, "cap:resourceDesc") or "",
                mime_type=_text(r, "cap:mimeType") or "",
                uri=_text(r, "cap:uri"),
                deref_uri=_text(r, "cap:derefUri"),
            )
            for r in node.findall("cap:resource", _NS)
        ],
        areas=[
            Area(
                desc=_text(a, "cap:areaDesc") or "",
                polygons=_all(a, "cap:polygon"),
                circles=_all(a, "cap:circle"),
                geocodes=_pairs(a, "cap:geocode"),
            )
            for a in node.findall("cap:area", _NS)
        ],
    )


def read(data: bytes) -> Alert:
    """Parse, validate and read a CAP 1.2 alert; `CapError` says what is wrong."""
    return read_root(parse_document(data))


def read_root(root: etree._Element) -> Alert:
    """Validate and read a parsed CAP 1.2 alert (`parse_document`)."""
    validate(root)
    return Alert(
        identifier=_text(root, "cap:identifier") or "",
        sender=_text(root, "cap:sender") or "",
        sent=parse_time(_text(root, "cap:sent") or ""),
        status=_text(root, "cap:status") or "",
        msg_type=_text(root, "cap:msgType") or "",
        scope=_text(root, "cap:scope") or "",
        references=_references(_text(root, "cap:references")),
        infos=[_info(n) for n in root.findall("cap:info", _NS)],
    )


# --- writing ---------------------------------------------------------------------------


def cap_time(value: dt.datetime) -> str:
    """CAP's date-time form: seconds, and an explicit ``+hh:mm`` offset (never ``Z``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class OutArea:
    desc: str
    geocodes: list[tuple[str, str]] = field(default_factory=list)
    circles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutAlert:
    identifier: str
    sender: str
    sent: dt.datetime
    msg_type: str
    event: str
    headline: str
    sender_name: str
    expires: dt.datetime | None
    description: str | None
    areas: list[OutArea]
    references: str | None = None
    note: str | None = None


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
    if text is not None:
        node.text = text
    return node


def build(alert: OutAlert) -> etree._Element:
    """A CAP 1.2 ``alert`` element for one of our own emergencies."""
    root = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(root, "identifier", alert.identifier)
    _sub(root, "sender", alert.sender)
    _sub(root, "sent", cap_time(alert.sent))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", alert.msg_type)
    _sub(root, "scope", "Public")
    if alert.note:
        _sub(root, "note", alert.note)
    if alert.references:
        _sub(root, "references", alert.references)
    info = _sub(root, "info")
    _sub(info, "language", "vi-VN")
    _sub(info, "category", "Safety")
    _sub(info, "event", alert.event)
    _sub(info, "urgency", "Immediate")
    _sub(info, "severity", "Severe")
    _sub(info, "certainty", "Observed")
    if alert.expires is not None:
        _sub(info, "expires", cap_time(alert.expires))
    _sub(info, "senderName", alert.sender_name)
    _sub(info, "headline", alert.headline)
    if alert.description:
        _sub(info, "description", alert.description)
    for area in alert.areas:
        node = _sub(info, "area")
        _sub(node, "areaDesc", area.desc)
        for circle in area.circles:
            _sub(node, "circle", circle)
        for name, value in area.geocodes:
            geocode = _sub(node, "geocode")
            _sub(geocode, "valueName", name)
            _sub(geocode, "value", value)
    return root


def to_bytes(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
