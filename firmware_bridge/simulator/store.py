"""What a virtual station keeps on its "flash": one directory per station.

::

    {state_dir}/{sid}/state.0|1     bdseq, default volume, handled items, last acks
    {state_dir}/{sid}/desired.json  the desired payload last applied (raw bytes)
    {state_dir}/{sid}/spool.jsonl   acks and events not yet acknowledged by the broker
    {state_dir}/{sid}/media/{sha}   verified media cache

Everything survives a process restart, as it would survive a reboot. The desired payload
is replaced atomically (write + rename). The small state is written every second a station
changed it, so it is written in place, alternately into two slots, each framed with a
sequence number and a CRC: a torn write leaves the other slot, the newer valid slot wins.
(On ext4 a write + rename over an existing file, or a truncation to zero, forces the data
out at once, about 0.25 ms each: a thousand stations in one simulator process spent most
of their CPU there, which a benchmark then counted against the service.)  The spool is
appended to on every new message, through a file kept open (an open and a close per
message were most of an append's cost), and rewritten in place when acknowledged messages
are pruned; a torn rewrite can only resend a message, which the server ignores by its id.
Each spool line is one JSON object, ``{"kind":"ack","payload":{...}}``, the message's own
bytes set in as they are (a message is one line of compact JSON already) rather than
encoded a second time as a string; lines written before, with the payload a string, are
still read. A ``state.json`` from before the slots is still read. The files exist, empty,
from the moment the station's store is opened (an empty slot is passed over like a torn
one).
"""

from __future__ import annotations

import json
import os
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["PersistedState", "SpoolEntry", "StationStore"]

SpoolKind = Literal["ack", "event"]


@dataclass
class PersistedState:
    """The small state a station persists."""

    last_bdseq: int | None = None
    volume: int | None = None
    handled_items: list[str] = field(default_factory=list)
    acks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One QoS 1 message waiting for its PUBACK (``seq`` orders the spool)."""

    seq: int
    kind: SpoolKind
    payload: bytes


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` without truncating it to zero first (see the module doc)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


#: how a spool line of each kind starts: the payload follows as it is, then ``}``
_SPOOL_HEAD: dict[str, bytes] = {
    kind: b'{"kind":"%s","payload":' % kind.encode() for kind in ("ack", "event")
}


def _spool_line(entry: SpoolEntry) -> bytes:
    """One spool line: a JSON object with the message's own bytes set in as its payload
    (a message is one line of JSON: ``firmware_bridge.messages`` writes it compact)."""
    return _SPOOL_HEAD[entry.kind] + entry.payload + b"}\n"


def _read_slot(path: Path) -> tuple[int, bytes] | None:
    """(sequence, body) of a slot written by `_write_slot`, None when absent or torn."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    head, sep, body = raw.partition(b"\n")
    try:
        seq_text, crc_text = head.split(b" ")
        seq, crc = int(seq_text), int(crc_text)
    except ValueError:
        return None
    if not sep or zlib.crc32(body) != crc:
        return None
    return seq, body


class StationStore:
    """File-backed persistence of one station."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.media_dir = root / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._media_dir_text = str(self.media_dir)
        self._legacy_state_path = root / "state.json"
        self._state_slots = (root / "state.0", root / "state.1")
        self._state_seq: int | None = None
        self._desired_path = root / "desired.json"
        self._spool_path = root / "spool.jsonl"
        self._spool_fd: int | None = None
        self._spool_closer: weakref.finalize[Any, StationStore] | None = None
        self._format()

    def _format(self) -> None:
        """Create the spool and the two state slots, empty, where they are missing (what
        is there is kept): a station's flash is laid out before its first message, as
        firmware lays out its partitions. Creating a file costs a journalled directory
        change; a city-wide broadcast once made a thousand stations pay it at the same
        moment, each with its first ack."""
        for path in (self._spool_path, *self._state_slots):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))

    # ------------------------------------------------------------- state + desired

    def load_state(self) -> PersistedState:
        """The persisted state, or defaults for a factory-new station."""
        slots = [slot for slot in map(_read_slot, self._state_slots) if slot is not None]
        self._state_seq = max((seq for seq, _ in slots), default=0)
        try:
            if slots:
                raw: dict[str, Any] = json.loads(max(slots)[1])
            else:
                raw = json.loads(self._legacy_state_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return PersistedState()
        return PersistedState(
            last_bdseq=raw.get("last_bdseq"),
            volume=raw.get("volume"),
            handled_items=list(raw.get("handled_items", [])),
            acks=dict(raw.get("acks", {})),
        )

    def save_state(self, state: PersistedState) -> None:
        """Persist ``state`` into the older slot (the newer one stays whole meanwhile)."""
        document = {
            "last_bdseq": state.last_bdseq,
            "volume": state.volume,
            "handled_items": state.handled_items,
            "acks": state.acks,
        }
        if self._state_seq is None:
            self.load_state()
        assert self._state_seq is not None
        self._state_seq += 1
        body = json.dumps(document).encode("utf-8")
        frame = b"%d %d\n" % (self._state_seq, zlib.crc32(body))
        _write_in_place(self._state_slots[self._state_seq % 2], frame + body)

    def load_desired(self) -> bytes | None:
        """The raw desired payload last applied, if any."""
        try:
            return self._desired_path.read_bytes()
        except FileNotFoundError:
            return None

    def save_desired(self, payload: bytes) -> None:
        """Persist the raw desired payload."""
        _atomic_write(self._desired_path, payload)

    # ------------------------------------------------------------- spool

    def load_spool(self) -> list[tuple[SpoolKind, bytes]]:
        """Spooled messages, oldest first (a torn last line is skipped)."""
        try:
            lines = self._spool_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries: list[tuple[SpoolKind, bytes]] = []
        for line in lines:
            try:
                record = json.loads(line)
                kind: SpoolKind = "ack" if record["kind"] == "ack" else "event"
                payload = record["payload"]
            except (ValueError, KeyError, TypeError):
                continue  # a torn line (the last one, after a power loss)
            raw = line.encode("utf-8")
            if isinstance(payload, str):  # a line written before the payload was set in
                entries.append((kind, payload.encode("utf-8")))
            elif isinstance(payload, dict) and raw.startswith(_SPOOL_HEAD[kind]):
                entries.append((kind, raw[len(_SPOOL_HEAD[kind]) : -1]))
            elif isinstance(payload, dict):  # written by hand, or by another tool
                compact = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
                entries.append((kind, compact.encode("utf-8")))
        return entries

    def append_spool(self, entry: SpoolEntry) -> None:
        """Append one message to the spool (every ack and event of thousands of simulated
        stations comes through here: one write to a file kept open, no text or buffer
        layers)."""
        fd = self._spool_fd
        if fd is None:
            # each line reaches the file (the page cache) by its own write, as before;
            # the file is closed with the store (`close`), or when the store is collected
            fd = os.open(self._spool_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._spool_closer = weakref.finalize(self, os.close, fd)
            self._spool_fd = fd
        view = memoryview(_spool_line(entry))
        while view:
            view = view[os.write(fd, view) :]

    def rewrite_spool(self, entries: list[SpoolEntry]) -> None:
        """Replace the spool with ``entries`` (after acknowledged ones were pruned); the
        appends that follow go to its new end (the file is open for appending)."""
        # an empty spool is one blank line (skipped when read): truncating to zero costs
        # as much as a rename on ext4
        _write_in_place(self._spool_path, b"".join(map(_spool_line, entries)) or b"\n")

    def close(self) -> None:
        """Close the spool's file (the store stays usable: the next append opens it)."""
        if self._spool_closer is not None:
            self._spool_closer()  # closes the file, once
        self._spool_fd = self._spool_closer = None

    # ------------------------------------------------------------- media cache

    def media_path(self, sha256: str) -> Path:
        """Where the verified file with this hash lives."""
        return self.media_dir / sha256

    def has_media(self, sha256: str, size: int) -> bool:
        """True when the cache holds the file with the expected size."""
        try:
            # a string path: a city-wide play asks this of every station at once, and
            # building the Path cost as much as the stat
            return os.stat(f"{self._media_dir_text}/{sha256}").st_size == size
        except FileNotFoundError:
            return False

    def cache_bytes(self) -> int:
        """Total size of the verified files in the media cache."""
        return sum(
            p.stat().st_size for p in self.media_dir.iterdir() if p.is_file() and "." not in p.name
        )

    def drop_media_except(self, keep: set[str]) -> list[str]:
        """Delete verified files not in ``keep`` (downloads in progress are left alone)."""
        removed = []
        for path in self.media_dir.iterdir():
            if path.is_file() and "." not in path.name and path.name not in keep:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed
