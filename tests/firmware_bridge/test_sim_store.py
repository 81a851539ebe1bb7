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
