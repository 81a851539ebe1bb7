"""Check that the lowest versions ``pyproject.toml`` allows are versions the code runs on.

A dependency floor is a promise: ``fastapi>=0.115`` says 0.115 works.  This resolves the
project's runtime dependencies at their lowest allowed versions (``uv pip compile
--resolution lowest-direct``), installs them into a throwaway virtual environment, and
runs ``scripts/floor_smoke.py`` there: the app factory, the migrations, authenticated
requests, a 422 and a 413, the strict loa/v1 parser and the bridge's paho client.

The environment is cached under ``~/.cache/broadcaster-floors/<hash of the
dependencies>``; once a set of floors passed, later runs only re-run the smoke test
(seconds).  ``uv`` comes from PyPI (the dev extra); nothing else is downloaded.

    python scripts/check_floors.py          # exit 0 when the floors hold
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11"  # the lowest Python the project supports (requires-python)


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        sys.exit("uv is not installed (pip install -e '.[dev]')")
    return found


def run(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(args)}")


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = "\n".join(project["dependencies"]) + "\n"
    smoke = (ROOT / "scripts" / "floor_smoke.py").read_bytes()
    key = hashlib.sha256(requirements.encode() + PYTHON_VERSION.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "broadcaster-floors"
    home = cache / key
    venv = home / "venv"
    python = venv / "bin" / "python"
    if not (home / "installed").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        (home / "requirements.in").write_text(requirements, encoding="utf-8")
        run(
            uv(), "pip", "compile", "--quiet", "--resolution", "lowest-direct",
            "--python-version", PYTHON_VERSION,
            str(home / "requirements.in"), "-o", str(home / "requirements.txt"),
        )  # fmt: skip
        run(uv(), "venv", "--quiet", "--python", sys.executable, str(venv))
        run(uv(), "pip", "install", "--quiet", "--python", str(python),
            "-r", str(home / "requirements.txt"))  # fmt: skip
        (home / "installed").write_text("ok\n", encoding="utf-8")
    lowest = (home / "requirements.txt").read_text(encoding="utf-8")
    pins = [line for line in lowest.splitlines() if "==" in line and not line.startswith("#")]
    print(f"floors: {len(pins)} packages at their lowest allowed versions ({home})")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env["PYTHONPATH"] = str(ROOT)  # the project's own code, not an installed copy
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    _ = smoke
    run(str(python), "-W", "error::DeprecationWarning:broadcaster",
        str(ROOT / "scripts" / "floor_smoke.py"), env=env)  # fmt: skip
    print("floors: the code runs on the lowest allowed versions")


if __name__ == "__main__":
    main()
