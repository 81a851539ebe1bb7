"""The one table that maps domain exceptions to HTTP answers.

Every error body is an RFC 9457 problem document (``application/problem+json``):
``type`` (``about:blank``), ``title``, ``status``, ``detail`` (English), a stable machine
``code`` (snake_case: the domain exception's ``code`` attribute, else its class name, e.g.
``StationNotFound`` -> ``station_not_found``; ``validation_error``, ``not_found``,
``database_unavailable``, ``internal_error``...) and, where known, ``message_vi``
(Vietnamese).  Field errors (422) keep FastAPI's shape, ``detail: [{loc, msg, type}]``,
whether pydantic or the domain found them.  Nothing the client sends may produce a 500;
the catch-all below exists for bugs only and logs them.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from broadcaster.web.middleware import PROBLEM_MEDIA_TYPE
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

#: Vietnamese messages of the HTTP errors the framework raises itself (unknown URL,
#: wrong method...).
HTTP_MESSAGES_VI = {
    400: "Yêu cầu không hợp lệ",
    401: "Cần đăng nhập",
    403: "Không có quyền truy cập",
    404: "Không tìm thấy",
    405: "Phương thức không được hỗ trợ",
    406: "Định dạng yêu cầu không được hỗ trợ",
    413: "Dữ liệu gửi lên quá lớn",
    409: "Xung đột với dữ liệu hiện có",
    415: "Kiểu dữ liệu gửi lên không được hỗ trợ",
    422: "Dữ liệu gửi lên không hợp lệ",
    429: "Quá nhiều yêu cầu, hãy thử lại sau",
    503: "Dịch vụ tạm thời không sẵn sàng, hãy thử lại sau",
}


def status_for(exc: DomainError) -> int:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return status.HTTP_400_BAD_REQUEST


def code_for(exc: DomainError) -> str:
    """The stable machine code of a domain error: its ``code`` attribute if it declares
    one, else its class name in snake_case."""
    declared = getattr(exc, "code", None)
    if isinstance(declared, str) and declared:
        return declared
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def problem(
    status_code: int,
    detail: Any,
    code: str,
    message_vi: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem response (plus ``code`` and ``message_vi``)."""
    try:
        title = HTTPStatus(status_code).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if message_vi:
        body["message_vi"] = message_vi
    return JSONResponse(
        body, status_code=status_code, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


_PLACES = ("body", "query", "path", "header", "cookie")


def loc_of(exc: InvalidInput) -> list[str | int]:
    """Where the refused value was, as FastAPI writes it: a place FastAPI knows
    (``query``, ``path``...) stands as given; a bare field is the body's."""
    given = list(exc.loc)
    return given if given and given[0] in _PLACES else ["body", *given]


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    code = status_for(exc)
    headers: dict[str, str] = {}
    detail: Any
    if isinstance(exc, InvalidInput):
        detail = [{"loc": loc_of(exc), "msg": exc.message, "type": "invalid"}]
    else:
        detail = exc.message
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, ServiceUnavailable) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    # every domain error raised with a request in view carries its own Vietnamese text;
    # this is the net for one that does not (a person always reads Vietnamese)
    message_vi = exc.message_vi or HTTP_MESSAGES_VI.get(code, "Yêu cầu không thực hiện được")
    return problem(code, detail, code_for(exc), message_vi, headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        item = {k: err[k] for k in ("loc", "msg", "type") if k in err}
        errors.append(item)
    unstorable = any(err.get("type") == UNSTORABLE_TEXT for err in errors)
    return problem(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        jsonable_encoder(errors),
        "unstorable_text" if unstorable else "validation_error",
        TEXT_VI if unstorable else "Dữ liệu gửi lên không hợp lệ",
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """The framework's own HTTP errors (unknown URL, wrong method) as problems."""
    assert isinstance(exc, StarletteHTTPException)
    try:
        code = HTTPStatus(exc.status_code).name.lower()
    except ValueError:
        code = "http_error"
    return problem(
        exc.status_code,
        exc.detail,
        code,
        HTTP_MESSAGES_VI.get(exc.status_code, "Lỗi"),
        dict(exc.headers) if exc.headers else None,
    )


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return problem(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "database unavailable",
        "database_unavailable",
        "Cơ sở dữ liệu tạm thời không sẵn sàng",
        {"Retry-After": "5"},
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error", "internal_error", "Lỗi hệ thống"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(Exception, unexpected_error)
