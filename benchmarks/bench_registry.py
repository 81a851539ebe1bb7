"""Registry benchmark: list/filter latency through the API and group resolution,
for 108, 1,000 and 10,000 stations (SQLite file database, in-process ASGI client)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from fleet_seed import add_bench_stations
from timing import report_json, timed

from broadcaster import db
from broadcaster.app import create_app
from broadcaster.auth import service as auth
from broadcaster.auth.models import TokenKind
from broadcaster.auth.schemas import UserCreate
from broadcaster.settings import Environment, Settings
from kernel.security import Role
from stations import service, tan_an


def run(n: int, workdir: Path) -> dict[str, object]:
    settings = Settings(
        environment=Environment.TEST,
        database_url=f"sqlite:///{workdir}/bench-{n}.db",
        secret_key="x" * 40,
        media_dir=workdir / "media",
    )
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    factory = db.make_sessionmaker(engine)
    with db.session_scope(factory) as session:
        tan_an.load(session)
        add_bench_stations(session, n, ["file"])
        user = auth.create_user(
            session, UserCreate(username="bench", password="bench-password-1", role=Role.ADMIN)
        )
        token, _ = auth.issue_token(session, user, kind=TokenKind.SESSION)
    headers = {"Authorization": f"Bearer {token}"}
    result: dict[str, object] = {"stations": n}
    with TestClient(create_app(settings)) as client:
        result["list_page_200"] = timed(
            lambda: client.get("/api/v1/stations?limit=200", headers=headers).raise_for_status()
        )
        result["list_commune_subtree"] = timed(
            lambda: client.get(
                "/api/v1/stations?area=xa-loi-binh-nhon&limit=1000", headers=headers
            ).raise_for_status()
        )
        result["search_no_diacritics"] = timed(
            lambda: client.get(
                "/api/v1/stations?q=cau+tre&limit=50", headers=headers
            ).raise_for_status()
        )
    with factory() as session:
        result["resolve_all_groups_per_station"] = timed(
            lambda: service.station_groups(session), repeat=5
        )
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="108,1000,10000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(int(n), Path(tmp)) for n in args.sizes.split(",")]
    out = {"benchmark": "registry", "runs": runs}
    report_json(out, args.out)


if __name__ == "__main__":
    main()
