"""Sign in and out (``/dang-nhap``, ``/dang-xuat``): form posts, no JavaScript needed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from broadcaster.auth import service as auth_service
from broadcaster.auth.dependencies import COOKIE_NAME, set_session_cookie
from broadcaster.web.pages.shared import (
    LOGIN_PATH,
    MaybeAccount,
    SignedIn,
    cross_site,
    error_page,
    render,
    safe_next,
)
from kernel.dependencies import SessionDep, client_ip
from kernel.errors import RateLimited, Unauthenticated

router = APIRouter(include_in_schema=False)


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_page(
    request: Request,
    account: MaybeAccount,
    next_: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    target = safe_next(next_)
    if account is not None:
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    notice = "Bạn đã đăng xuất." if request.query_params.get("da_dang_xuat") else None
    return render(request, "login.html", {"next": target, "notice": notice, "username": ""})


@router.post(LOGIN_PATH, response_class=HTMLResponse)
def login_submit(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next_: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    target = safe_next(next_)
    context: dict[str, Any] = {"next": target, "username": username, "notice": None}
    if cross_site(request, required=False):
        context["error"] = "Yêu cầu đăng nhập không xuất phát từ trang này."
        return render(request, "login.html", context, status_code=status.HTTP_403_FORBIDDEN)
    if not username.strip() or not password:
        context["error"] = "Vui lòng nhập tên đăng nhập và mật khẩu."
        return render(request, "login.html", context, status_code=422)
    try:
        plaintext, _ = auth_service.log_in(
            session, username.strip(), password, ip=client_ip(request)
        )
    except RateLimited as exc:
        session.commit()
        context["error"] = exc.message_vi or "Đăng nhập sai quá nhiều lần, vui lòng thử lại sau."
        context["locked"] = True
        return render(
            request,
            "login.html",
            context,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    except Unauthenticated as exc:
        session.commit()  # the failed attempt's audit entry and lockout count
        context["error"] = exc.message_vi or "Sai tên đăng nhập hoặc mật khẩu."
        return render(request, "login.html", context, status_code=status.HTTP_401_UNAUTHORIZED)
    session.commit()
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    set_session_cookie(request, response, plaintext)
    return response


@router.get("/dang-xuat", response_class=HTMLResponse)
def logout_page(request: Request, account: SignedIn) -> Response:
    return render(request, "logout.html", {"account": account})


@router.post("/dang-xuat")
def logout_submit(request: Request, session: SessionDep, account: MaybeAccount) -> Response:
    if account is not None:
        if cross_site(request, required=True):
            return error_page(
                request, account, 403, "Yêu cầu đăng xuất không xuất phát từ trang này."
            )
        auth_service.log_out(session, account.principal, ip=client_ip(request))
        session.commit()
    response = RedirectResponse(
        LOGIN_PATH + "?da_dang_xuat=1", status_code=status.HTTP_303_SEE_OTHER
    )
    response.delete_cookie(COOKIE_NAME, path="/")
    return response
