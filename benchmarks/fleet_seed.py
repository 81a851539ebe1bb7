"""Shared by the benchmarks: grow the seeded Tân An registry to ``n`` stations."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from stations.models import Area, AreaLevel, Station, StationKind


def add_bench_stations(session: Session, n: int, capabilities: list[str]) -> int:
    """Add ``n - 108`` smart stations ``bench-00000``… spread over the city's hamlets
    (after ``tan_an.load``); return how many were added."""
    hamlets = list(session.scalars(select(Area.id).where(Area.level == AreaLevel.HAMLET)))
    extra = n - 108
    if extra <= 0:
        return 0
    session.execute(
        insert(Station),
        [
            {
                "sid": f"bench-{i:05d}",
                "name": f"Trạm thử {i}",
                "name_folded": f"tram thu {i}",
                "kind": StationKind.SMART,
                "area_id": hamlets[i % len(hamlets)],
                "capabilities": capabilities,
                "default_volume": 70,
                "enabled": True,
            }
            for i in range(extra)
        ],
    )
    return extra
