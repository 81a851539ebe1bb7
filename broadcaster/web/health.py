"""Liveness (`/healthz`) and readiness (`/readyz`) probes; no credentials needed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(tags=["health"])

ReadinessCheck = Callable[[], tuple[bool, dict[str, Any]]]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and every registered component says so."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except SQLAlchemyError as exc:
        ready = False
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    extra: dict[str, ReadinessCheck] = getattr(request.app.state, "readiness", {})
    for name, check in extra.items():
        ok, detail = check()
        checks[name] = {"ok": ok, **detail}
        ready = ready and ok
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
