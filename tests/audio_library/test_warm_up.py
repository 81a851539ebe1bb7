"""The audio process pool is started and warmed at start-up, so the first spoken
emergency does not pay for the pool's processes, their imports and espeak-ng's voices."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
from collections.abc import Iterator

from fastapi.testclient import TestClient

from broadcaster.app import create_app
from broadcaster.settings import Settings
from tests.support.loa import wait_until
from tests.support.process import ChildProcess, child_pids, python_argv


def _pool_pids(app: object) -> set[int]:
    pool = app.state.media_library.processor._pool  # type: ignore[attr-defined]
    return set() if pool is None else {p.pid for p in pool._processes.values()}


def test_the_service_warms_its_audio_processes_at_start(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    app = create_app(settings.model_copy(update={"speech_warm_up": True}))
    with TestClient(app) as client:

        def state() -> str:
            ready = client.get("/readyz").json()
            return str(ready["checks"]["speech"]["audio_pool"])

        wait_until(lambda: state() == "warm", timeout_s=120, what="the audio pool warmed")
        # both workers run, before any speech was asked for
        pids = _pool_pids(app)
        assert len(pids) == 2
        assert all(pathlib.Path(f"/proc/{pid}").exists() for pid in pids)


def test_without_warm_up_nothing_starts(settings: Settings) -> None:
    assert settings.speech_warm_up is False  # the in-process test apps
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/readyz").json()["checks"]["speech"]["audio_pool"] == "not started"
        assert _pool_pids(app) == set()


#: a service in miniature, the foreground job of a terminal (a process group of its
#: own): its audio pool, warmed, then nothing until it is killed or stopped by Ctrl-C,
#: when it shuts its pool down itself, as the service does
_POOL_OWNER = """
import os, pathlib, sys, tempfile, time
os.setpgid(0, 0)
from audio_library.processing import MediaProcessor
from audio_library.settings import AudioSettings
processor = MediaProcessor(AudioSettings(), workers=2)
processor.warm(pathlib.Path(tempfile.mkdtemp()))
print("warm", flush=True)
try:
    time.sleep(600)
except KeyboardInterrupt:
    processor.shutdown()
    print("stopped", flush=True)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for an init that does not reap is gone)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def _pool_owner(tmp_path: pathlib.Path) -> Iterator[ChildProcess]:
    """`_POOL_OWNER` started and warmed; afterwards, every audio process it had ended
    (waited for, then killed whatever is left)."""
    owner = ChildProcess(python_argv("-c", _POOL_OWNER), log_path=tmp_path / "owner.log")
    owner.start()
    left: list[int] = []
    try:
        owner.wait_for_output("warm", timeout_s=120)
        left = child_pids(owner.pid)
        # the forkserver, its two workers and the resource tracker
        assert len(left) == 4, owner.log_tail()
        yield owner
        wait_until(
            lambda: not any(_running(pid) for pid in left),
            timeout_s=30,
            what="every audio process ended with the service",
        )
    finally:
        owner.kill()
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_the_audio_processes_end_when_the_service_is_killed(tmp_path: pathlib.Path) -> None:
    """A service killed outright (``SIGKILL``, the OOM killer) leaves no audio process
    behind: its pool workers, the forkserver and the resource tracker end by themselves."""
    with _pool_owner(tmp_path) as owner:
        owner.kill()


def test_ctrl_c_stops_the_audio_processes_quietly(tmp_path: pathlib.Path) -> None:
    """Ctrl-C in the terminal (``SIGINT`` to the whole foreground process group, the
    pool's workers with it: `make demo`) leaves the stopping to the service: no worker
    prints a ``KeyboardInterrupt`` traceback, and every audio process ends."""
    with _pool_owner(tmp_path) as owner:
        os.killpg(owner.pid, signal.SIGINT)
        owner.wait_for_output("stopped", timeout_s=60)
    assert "KeyboardInterrupt" not in owner.log_tail(200), owner.log_tail(200)
    assert "Traceback" not in owner.log_tail(200), owner.log_tail(200)
