"""A virtual station's "flash" (`firmware_bridge.simulator.store`): the small state in two
framed slots written in place (a torn write falls back to the other slot), a state.json
from before the slots still read, the spool rewritten in place and appended to again."""

from __future__ import annotations

import json
from pathlib import Path

from firmware_bridge.simulator.store import PersistedState, SpoolEntry, StationStore


def test_the_newest_whole_slot_wins_and_a_torn_one_is_passed_over(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "st")
    assert store.load_state() == PersistedState()  # factory new
    for bdseq in (1, 2, 3):
        store.save_state(PersistedState(last_bdseq=bdseq, volume=40, acks={"c": "{}"}))
    assert StationStore(tmp_path / "st").load_state().last_bdseq == 3
    # the power went mid-write: the newest slot holds a cut-off frame
    newest = max((tmp_path / "st").glob("state.*"), key=lambda p: p.read_bytes()[:4])
    newest.write_bytes(newest.read_bytes()[:-5])
    again = StationStore(tmp_path / "st")
    assert again.load_state().last_bdseq == 2
    # and the next write goes on from the highest sequence, into the torn slot
    again.save_state(PersistedState(last_bdseq=4))
    assert StationStore(tmp_path / "st").load_state().last_bdseq == 4
    # a shorter document over a longer one leaves no tail behind
    again.save_state(PersistedState(last_bdseq=5, acks={f"cmd-{i}": "{}" for i in range(50)}))
    again.save_state(PersistedState(last_bdseq=6))
    again.save_state(PersistedState(last_bdseq=7))
    assert StationStore(tmp_path / "st").load_state() == PersistedState(last_bdseq=7)


def test_a_state_json_from_before_the_slots_is_read(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "state.json").write_text(
        json.dumps({"last_bdseq": 9, "volume": 55, "handled_items": ["a"], "acks": {}})
    )
    store = StationStore(root)
    assert store.load_state() == PersistedState(last_bdseq=9, volume=55, handled_items=["a"])
    store.save_state(PersistedState(last_bdseq=10))
    assert StationStore(root).load_state().last_bdseq == 10


def test_the_spool_is_pruned_in_place_and_appended_to_again(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "st")
    one, two = SpoolEntry(1, "ack", b'{"n": 1}'), SpoolEntry(2, "event", b'{"n": 2}')
    store.append_spool(one)
    store.append_spool(two)
    assert store.load_spool() == [("ack", b'{"n": 1}'), ("event", b'{"n": 2}')]
    store.rewrite_spool([two])
    assert store.load_spool() == [("event", b'{"n": 2}')]
    store.rewrite_spool([])
    assert store.load_spool() == []
    store.append_spool(SpoolEntry(3, "ack", b'{"n": 3}'))
    assert store.load_spool() == [("ack", b'{"n": 3}')]


def test_a_new_store_lays_out_its_files_and_an_old_one_keeps_them(tmp_path: Path) -> None:
    root = tmp_path / "st"
    store = StationStore(root)
    # the first ack of a station's life appends to a spool that exists (no file created
    # then, for a thousand stations at once)
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == [
        "spool.jsonl",
        "state.0",
        "state.1",
    ]
    assert store.load_state() == PersistedState()  # empty slots: factory new
    assert store.load_spool() == []
    store.save_state(PersistedState(last_bdseq=5, volume=30))
    store.append_spool(SpoolEntry(1, "ack", b'{"n": 1}'))
    reopened = StationStore(root)
    assert reopened.load_state() == PersistedState(last_bdseq=5, volume=30)
    assert reopened.load_spool() == [("ack", b'{"n": 1}')]


def test_a_spool_line_is_json_with_the_message_set_in_and_older_lines_are_read(
    tmp_path: Path,
) -> None:
    root = tmp_path / "st"
    store = StationStore(root)
    ack = b'{"cmd_id":"c-1","status":"RECEIVED","at":"2026-12-06T22:00:00.000+07:00"}'
    event = '{"event_id":"e-1","type":"play.started","title":"Tin bão số 3"}'.encode()
    store.append_spool(SpoolEntry(1, "ack", ack))
    store.append_spool(SpoolEntry(2, "event", event))
    lines = (root / "spool.jsonl").read_bytes().splitlines()
    # every line is a JSON object, the message's bytes in it as they are (not a string)
    assert [json.loads(line) for line in lines] == [
        {"kind": "ack", "payload": json.loads(ack)},
        {"kind": "event", "payload": json.loads(event)},
    ]
    assert lines[0] == b'{"kind":"ack","payload":' + ack + b"}"
    with (root / "spool.jsonl").open("ab") as spool:
        # a line from before (the payload a string), one written by hand, and a line
        # the power cut short: read, read, passed over
        older = {"kind": "event", "payload": '{"n":1}'}
        spool.write(json.dumps(older).encode() + b"\n")
        spool.write(b'{"kind": "ack", "payload": {"n": 2, "note": "\xc4\x91"}}\n')
        spool.write(b'{"kind":"ack","payload":{"cmd_id":"c-')
    assert StationStore(root).load_spool() == [
        ("ack", ack),
        ("event", event),
        ("event", b'{"n":1}'),
        ("ack", '{"n":2,"note":"đ"}'.encode()),
    ]


def test_the_spool_stays_open_until_the_store_is_closed_and_opens_again(
    tmp_path: Path,
) -> None:
    store = StationStore(tmp_path / "st")
    fds = Path("/proc/self/fd")
    before = len(list(fds.iterdir()))
    for seq in range(1, 6):
        store.append_spool(SpoolEntry(seq, "ack", b'{"n":%d}' % seq))
    assert len(list(fds.iterdir())) == before + 1  # one file for all five
    store.close()
    store.close()  # twice is harmless
    assert len(list(fds.iterdir())) == before
    store.append_spool(SpoolEntry(6, "ack", b'{"n":6}'))
    assert [p for _, p in store.load_spool()] == [b'{"n":%d}' % n for n in range(1, 7)]
    # a store dropped without `close` releases its file when it is collected
    del store
    assert len(list(fds.iterdir())) == before
