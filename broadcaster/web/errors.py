"""The one table that maps domain exceptions to HTTP answers.

Every error body carries ``detail`` (English) and, where known, ``message_vi``
(Vietnamese).  Field errors (422) use FastAPI's shape, ``detail: [{loc, msg, type}]``,
whether pydantic or the domain found them.  Nothing the client sends may produce a 500;
the catch-all below exists for bugs only and logs them.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from broadcaster.web.validation import ERROR_TYPE as UNSTORABLE_TEXT
from kernel.bounds import TEXT_VI
from kernel.errors import (
    ConflictError,
    DomainError,
    InvalidInput,
    NotFoundError,
    PayloadTooLarge,
    PermissionDeniedError,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (ConflictError, status.HTTP_409_CONFLICT),
    (InvalidInput, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (PayloadTooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (Unauthenticated, status.HTTP_401_UNAUTHORIZED),
    (PermissionDeniedError, status.HTTP_403_FORBIDDEN),
    (RateLimited, status.HTTP_429_TOO_MANY_REQUESTS),
    (ServiceUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
)


def status_for(exc: DomainError) -> int:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return status.HTTP_400_BAD_REQUEST


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    code = status_for(exc)
    headers: dict[str, str] = {}
    body: dict[str, object]
    if isinstance(exc, InvalidInput):
        loc = ["body", *exc.loc] if exc.loc else ["body"]
        body = {"detail": [{"loc": loc, "msg": exc.message, "type": "invalid"}]}
    else:
        body = {"detail": exc.message}
    if exc.message_vi:
        body["message_vi"] = exc.message_vi
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, ServiceUnavailable) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(body, status_code=code, headers=headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        item = {k: err[k] for k in ("loc", "msg", "type") if k in err}
        errors.append(item)
    unstorable = any(err.get("type") == UNSTORABLE_TEXT for err in errors)
    return JSONResponse(
        {
            "detail": jsonable_encoder(errors),
            "message_vi": TEXT_VI if unstorable else "Dữ liệu gửi lên không hợp lệ",
        },
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return JSONResponse(
        {"detail": "database unavailable", "message_vi": "Cơ sở dữ liệu tạm thời không sẵn sàng"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal error", "message_vi": "Lỗi hệ thống"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(Exception, unexpected_error)
