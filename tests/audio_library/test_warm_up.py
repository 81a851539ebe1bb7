"""The audio process pool is started and warmed at start-up, so the first spoken
emergency does not pay for the pool's processes, their imports and espeak-ng's voices."""

from __future__ import annotations

import pathlib

from fastapi.testclient import TestClient

from broadcaster.app import create_app
from broadcaster.settings import Settings
from tests.support.loa import wait_until


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
