"""The deployment files (``deploy/``, docs/deployment.md) are valid as shipped.

- ``deploy/haproxy/broadcaster.cfg`` passes ``haproxy -c`` (with a throwaway
  self-signed certificate in place of the site's);
- every systemd unit in ``deploy/systemd`` passes ``systemd-analyze verify`` with no
  complaint (unknown keys, bad values, a missing executable: the console script path
  is pointed at this checkout's interpreter's);
- every ``BROADCASTER_*`` variable of the example environment files is a setting the
  service knows, and both load as valid production settings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broadcaster.settings import Settings
from tests.support.haproxy import find_haproxy

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTALLED = "/opt/broadcaster/.venv/bin/broadcaster"


@pytest.mark.skipif(find_haproxy() is None, reason="haproxy is not installed")
def test_haproxy_config_passes_haproxy_check(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    bundle = tmp_path / "broadcaster.pem"
    bundle.write_bytes(cert.read_bytes() + key.read_bytes())
    shipped = (DEPLOY / "haproxy" / "broadcaster.cfg").read_text()
    assert "/etc/haproxy/certs/broadcaster.pem" in shipped
    config = tmp_path / "haproxy.cfg"
    config.write_text(shipped.replace("/etc/haproxy/certs/broadcaster.pem", str(bundle)))
    binary = find_haproxy()
    assert binary is not None
    done = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # the health check the tests rely on is the one shipped
    assert "http-check send meth GET uri /readyz" in shipped
    assert "retry-on conn-failure empty-response" in shipped


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    entry = Path(sys.executable).with_name("broadcaster")
    assert entry.exists(), "the console script (pip install -e .)"
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {
        "broadcaster.service",
        "broadcaster-api@.service",
        "broadcaster-worker.service",
    }
    names = []
    for unit in units:
        text = unit.read_text()
        assert INSTALLED in text, unit.name
        (tmp_path / unit.name).write_text(text.replace(INSTALLED, str(entry)))
        names.append(unit.name.replace("@.", "@8001."))  # an instance of the template
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    complaints = [line for line in done.stderr.splitlines() if str(tmp_path) in line]
    assert done.returncode == 0, done.stderr
    assert not complaints, "\n".join(complaints)


@pytest.mark.parametrize("name", ["city.env", "province.env"])
def test_example_environment_files_are_known_valid_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {}
    for line in (DEPLOY / "env" / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"BROADCASTER_[A-Z0-9_]+", key), line
            values[key] = value
    known = {f"BROADCASTER_{field.upper()}" for field in Settings.model_fields}
    assert set(values) <= known, set(values) - known
    for key in list(os.environ):
        if key.startswith("BROADCASTER_"):
            monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.environment.value == "production"
