"""One check for every string an API request carries: it must be storable as text.

PostgreSQL refuses NUL in any string (a text column, and even a query parameter:
psycopg raises before the query is sent), and a lone UTF-16 surrogate (JSON's
``"\\ud800"``) cannot be encoded for either database.  Rather than a type on each of
the hundreds of string fields, parameters and form fields, `storable_text` runs as a
router dependency of every router (after authentication, before the route's own
dependencies and body validation) and checks what FastAPI has parsed:

- path parameters, and the query parameters the route declares;
- the JSON body (already parsed and cached by the request) or the form fields (not
  uploaded files), for routes that take a body.

An offending string is a 422 in FastAPI's shape (``loc`` says where) with the
Vietnamese ``message_vi`` of `kernel.bounds.TEXT_VI` (see `broadcaster.web.errors`).
The rule itself, `kernel.bounds.find_text_problem`, is shared with the station
messages the bridge ingests.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from kernel.bounds import find_text_problem

#: The ``type`` of the error, which the 422 handler maps to the Vietnamese message.
ERROR_TYPE = "string_unstorable"

#: id(route) -> (route, names): the route is kept, so its id is never reused
_declared_queries: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def _declared_query_names(route: APIRoute) -> frozenset[str]:
    cached = _declared_queries.get(id(route))
    if cached is not None and cached[0] is route:
        return cached[1]
    names = frozenset(
        field.alias
        for field in get_flat_params(route.dependant)
        if isinstance(field.field_info, params.Query)
    )
    _declared_queries[id(route)] = (route, names)
    return names


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _is_form(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in {"multipart/form-data", "application/x-www-form-urlencoded"}


async def _body(request: Request, route: APIRoute | None) -> tuple[str, Any] | None:
    """The body as FastAPI parsed it (cached on the request), for routes that take one."""
    if route is None or route.body_field is None:
        return None
    content_type = request.headers.get("content-type", "")
    if _is_form(content_type):
        form = await request.form()
        return "body", {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if _is_json(content_type) or not content_type:
        if not await request.body():
            return None
        try:
            return "body", await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # FastAPI answers that itself
    return None


def _problem(request: Request, parsed_body: tuple[str, Any] | None) -> Any:
    route = request.scope.get("route")
    api_route = route if isinstance(route, APIRoute) else None
    found = find_text_problem(dict(request.path_params), ("path",))
    if found is None and api_route is not None:
        declared = _declared_query_names(api_route)
        queries = [(k, v) for k, v in request.query_params.multi_items() if k in declared]
        for key, value in queries:
            found = find_text_problem(value, ("query", key))
            if found:
                break
    if found is None and parsed_body is not None:
        found = find_text_problem(parsed_body[1], (parsed_body[0],))
    return found


async def storable_text(request: Request) -> None:
    """Refuse (422) a request carrying a string no database can store."""
    route = request.scope.get("route")
    parsed_body = await _body(request, route if isinstance(route, APIRoute) else None)
    found = _problem(request, parsed_body)
    if found is None:
        return
    loc, reason = found
    raise RequestValidationError(
        [
            {
                "type": ERROR_TYPE,
                "loc": loc,
                "msg": f"{reason}: NUL and lone surrogates cannot be stored; remove them",
                "input": None,
            }
        ]
    )
