"""CAP ``area`` blocks to stations.

- ``polygon``: ``lat,lon lat,lon ...`` (closed ring, WGS 84): the stations whose
  coordinates lie inside or on the edge (shapely);
- ``circle``: ``lat,lon radius_km``: the stations within the radius (great-circle);
- ``geocode``: a value that is one of our area codes (``phuong-3``, ``xa-loi-binh-nhon``,
  a hamlet's code...): every station of that area and the areas under it.  The value
  name is not interpreted (sources use ``MA_DVHC``, ``area``...); unknown codes match
  nothing.

Stations without coordinates are matched by geocode only.  The union of every area of
the chosen ``info`` block is the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shapely import Point, Polygon, prepared

from broadcaster.alerts.cap import Area, CapError

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Place:
    sid: str
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class Match:
    desc: str
    sids: list[str]


def _point(text: str) -> tuple[float, float]:
    lat_text, _, lon_text = text.partition(",")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError as exc:
        raise CapError(f"bad coordinate pair {text!r}", f"Tọa độ không hợp lệ: {text!r}") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat + lon):
        raise CapError(f"coordinate out of range {text!r}", f"Tọa độ ngoài phạm vi: {text!r}")
    return lat, lon


def polygon(text: str) -> Polygon:
    points = [_point(p) for p in text.split()]
    if len(points) < 4 or points[0] != points[-1]:
        raise CapError(
            "a CAP polygon needs at least four pairs, the first and last equal",
            "Đa giác CAP cần ít nhất 4 điểm, điểm đầu trùng điểm cuối",
        )
    shape = Polygon([(lon, lat) for lat, lon in points])
    if not shape.is_valid:
        shape = shape.buffer(0)
    return shape


def circle(text: str) -> tuple[float, float, float]:
    centre, _, radius_text = text.strip().partition(" ")
    lat, lon = _point(centre)
    try:
        radius = float(radius_text)
    except ValueError as exc:
        raise CapError(f"bad circle {text!r}", f"Vòng tròn không hợp lệ: {text!r}") from exc
    if not 0 <= radius <= 20_000:
        raise CapError(f"bad circle radius {text!r}", f"Bán kính không hợp lệ: {text!r}")
    return lat, lon, radius


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def match(
    areas: Sequence[Area], places: Sequence[Place], by_area_code: Mapping[str, Sequence[str]]
) -> list[Match]:
    """The stations of each area (`by_area_code`: area code -> sids of its subtree)."""
    out = []
    for area in areas:
        found: set[str] = set()
        for text in area.polygons:
            shape = prepared.prep(polygon(text))
            found.update(
                p.sid
                for p in places
                if p.latitude is not None
                and p.longitude is not None
                and shape.covers(Point(p.longitude, p.latitude))
            )
        for text in area.circles:
            lat, lon, radius = circle(text)
            found.update(
                p.sid
                for p in places
                if p.latitude is not None
                and p.longitude is not None
                and distance_km(lat, lon, p.latitude, p.longitude) <= radius
            )
        for _name, value in area.geocodes:
            found.update(by_area_code.get(value.strip(), ()))
        out.append(Match(desc=area.desc, sids=sorted(found)))
    return out
