"""The web dashboard: server-rendered HTML pages for operators and technicians.

Every page is a public route that reads the ``broadcaster_session`` cookie itself
(`shared.SignedIn`) and redirects to ``/dang-nhap`` without a valid session.  Data
comes from the same service functions and scope rules as the JSON API
(`broadcaster.dispatch.reports` and the domain services): an account sees its areas and
what lies under them, and an object outside them answers the 404 page, exactly like the
API.  Pages run no queries of their own.  What the browser changes (commands,
broadcasts, stop) goes through the JSON API with the session cookie (`static/app.js`);
the pages never bypass it.

One module per area of the dashboard (Vietnamese paths, as operators say them):

- `signin`: ``/dang-nhap``, ``/dang-xuat``, sign in and out (form posts);
- `overview`: ``/`` and its refresh ``/tong-quan.json``;
- `stations`: ``/tram``, ``/tram/{sid}``, the station list and one station in detail;
- `broadcasts`: ``/phat-thanh``, ``/phat-thanh/{id}``, send a broadcast, follow one live;
- `live`: ``/truc-tiep``, live paging from the microphone or a stream URL;
- `playlog`: ``/nhat-ky``, the play log and its daily totals;
- `alarms`: ``/canh-bao``, technician alarms (filters, acknowledge with a note);
- `admin`: ``/quan-tri/...``, accounts, integration tokens and the audit log (city
  administrators only);
- `areas`: ``/quan-tri/dia-ban``, ``/quan-tri/sap-xep``, the area tree editor and the
  administrative reorganisation with its preview (city-wide administrators only);
- `library`: ``/thu-vien``, ``/thu-vien/{id}``, ``/duyet``, the audio library and the
  approval queue;
- unknown dashboard URLs: the Vietnamese 404 page (`unknown_url`; the API's stay
  ``application/problem+json``);
- `schedules`: ``/lich`` (week calendar), ``/lich/chuong-trinh...`` (programmes),
  ``/lich/quy-tac...`` (rules, conflicts, live preview), ``/tram/{sid}/lich-phat`` (a
  station's playlist of any day);
- `reports`: ``/bao-cao``, the monthly airtime minutes (chart, XLSX and CSV);
- `shared`: templates, the signed-in account dependency, rendering, paging;
  `labels`: the Vietnamese words for the system's codes.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, Request, Response, params
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from broadcaster.web import errors
from broadcaster.web.pages import (
    admin,
    alarms,
    areas,
    broadcasts,
    library,
    live,
    overview,
    playlog,
    reports,
    schedules,
    signin,
    stations,
)
from broadcaster.web.pages.shared import (
    STATIC_DIR,
    STATIC_PREFIX,
    SignInRequired,
    error_page,
    signed_in_account,
    to_sign_in,
)

__all__ = ["STATIC_DIR", "STATIC_PREFIX", "install", "router"]

router = APIRouter(include_in_schema=False)
for _area in (
    signin,
    overview,
    schedules,  # before stations: /tram/{sid}/lich-phat
    stations,
    broadcasts,
    live,
    playlog,
    reports,
    library,
    alarms,
    admin,
    areas,
):
    router.include_router(_area.router)


#: Paths that are not the dashboard's: their unknown URLs answer a problem document.
NOT_PAGES = ("/api/", "/media/", "/static/", "/openapi.json", "/docs", "/healthz", "/readyz")
NOT_PAGES_EXACT = frozenset({"/api", "/media", "/static", "/metrics"})


def is_page_path(path: str) -> bool:
    return path not in NOT_PAGES_EXACT and not path.startswith((*NOT_PAGES, "/metrics"))


async def unknown_url(request: Request, exc: Exception) -> Response:
    """An unknown dashboard URL answers the dashboard's Vietnamese 404 page; every other
    framework HTTP error (and any under the API) answers ``application/problem+json``."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and is_page_path(request.url.path):
        return error_page(
            request,
            signed_in_account(request),
            404,
            "Không có trang này. Kiểm tra lại địa chỉ hoặc về trang tổng quan.",
        )
    return await errors.http_error(request, exc)


def install(app: FastAPI, *, dependencies: Sequence[params.Depends] = ()) -> None:
    """The pages (with the app's `dependencies` for every route), their static files and
    the redirect of a page without a session."""
    app.include_router(router, dependencies=dependencies)
    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(StarletteHTTPException, unknown_url)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="app-static")
