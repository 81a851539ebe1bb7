"""``broadcaster live icecast-config`` writes a private configuration and prints the
setting the service reads."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from typer.testing import CliRunner

from broadcaster.cli import app
from broadcaster.settings import Settings


def test_icecast_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["live", "icecast-config", "--dir", str(tmp_path / "ice"), "--port", "18123"]
    )
    assert result.exit_code == 0, result.output
    config = tmp_path / "ice" / "icecast.xml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text(encoding="utf-8")
    assert "<burst-size>0</burst-size>" in text
    assert "<port>18123</port>" in text
    found = re.search(r"BROADCASTER_LIVE_ICECAST_URL=(\S+)", result.output)
    assert found
    url = found.group(1)
    assert url.startswith("http://source:")
    assert url.endswith("@127.0.0.1:18123")
    password = url.removeprefix("http://source:").split("@")[0]
    assert f"<source-password>{password}</source-password>" in text
    assert Settings(live_icecast_url=url).live_icecast_url is not None
