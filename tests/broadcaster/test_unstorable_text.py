"""No string a request carries can reach the database with a character it cannot store
(issue 15, the NUL leftover of defect 8): PostgreSQL refused NUL in media titles,
programme and rule names, broadcast texts, accounts... with a 500 (psycopg's "A string
literal cannot contain NUL (0x00) characters"); lone surrogates failed on both
databases.  Every such string is a 422 with the Vietnamese message, whatever the route.
"""

from __future__ import annotations

import json
import re
import tempfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kernel.bounds import TEXT_VI, find_text_problem, text_problem

pytestmark = pytest.mark.usefixtures("tan_an")

NUL = "Tân\x00An"
SURROGATE = "Tân\ud800An"


def _post_json(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> Any:
    # json.dumps escapes both characters (\u0000, \ud800), as a client's JSON would
    return client.request(
        method,
        path,
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


def _refused(response: Any, loc: list[Any] | None = None) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message_vi"] == TEXT_VI, body
    assert body["detail"][0]["type"] == "string_unstorable"
    if loc is not None:
        assert body["detail"][0]["loc"] == loc, body


# --- every JSON-body route, every string field ----------------------------------------


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _string_paths(
    schema: dict[str, Any], document: dict[str, Any], prefix: tuple[Any, ...] = (), depth: int = 0
) -> list[tuple[Any, ...]]:
    """Where a string can sit in a body of ``schema`` (one path per property)."""
    schema = _resolve(schema, document)
    if depth > 6:
        return []
    paths: list[tuple[Any, ...]] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            paths.extend(_string_paths(option, document, prefix, depth + 1))
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and prefix not in paths:
        paths.append(prefix)
    if kind == "array" and "items" in schema:
        paths.extend(_string_paths(schema["items"], document, (*prefix, 0), depth + 1))
    for name, child in schema.get("properties", {}).items():
        paths.extend(_string_paths(child, document, (*prefix, name), depth + 1))
    return list(dict.fromkeys(paths))


def _body_at(path: tuple[Any, ...], value: str) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        return [_body_at(rest, value)]
    return {head: _body_at(rest, value)}


def _json_body_cases() -> list[tuple[str, str, tuple[Any, ...]]]:
    from broadcaster.app import create_app
    from broadcaster.runtime import Role
    from broadcaster.settings import Settings

    url = f"sqlite:///{tempfile.gettempdir()}/openapi-only.db"  # never opened
    app = create_app(Settings(database_url=url), role=Role.API, migrate=False)
    document = app.openapi()
    cases = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                continue
            for field in _string_paths(schema, document):
                cases.append((method.upper(), path, field))
    return cases


CASES = _json_body_cases()


def test_the_walk_finds_the_routes_it_must() -> None:
    """The walk below covers the fields the defect was found in."""
    fields = {(method, path, ".".join(map(str, field))) for method, path, field in CASES}
    for expected in [
        ("PATCH", "/api/v1/media/{asset_id}", "title"),
        ("POST", "/api/v1/programmes", "title"),
        ("POST", "/api/v1/schedules/rules", "title"),
        ("POST", "/api/v1/users", "username"),
        ("POST", "/api/v1/media/tts", "text"),
    ]:
        assert expected in fields, sorted(fields)
    assert len({(m, p) for m, p, _ in CASES}) >= 20


@pytest.mark.parametrize(
    ("method", "path", "field"),
    CASES,
    ids=[f"{m} {p} {'.'.join(map(str, f))}" for m, p, f in CASES],
)
def test_every_json_string_field_refuses_nul(
    client: TestClient, admin: dict[str, str], method: str, path: str, field: tuple[Any, ...]
) -> None:
    url = re.sub(r"{\w+_id}", "1", path)
    url = url.replace("{sid}", "lbn-cau-tre").replace("{code}", "tan-an")
    url = url.replace("{gid}", "all").replace("{name}", "x")
    assert "{" not in url, url
    response = _post_json(client, method, url, _body_at(field, NUL), admin)
    _refused(response, ["body", *field])


# --- valid requests but for one character (what reached the database) ------------------


def test_media_title_programme_rule_broadcast_and_account_refuse_nul(
    client: TestClient, admin: dict[str, str]
) -> None:
    for value in (NUL, SURROGATE):
        tts = _post_json(client, "POST", "/api/v1/media/tts", {"text": value}, admin)
        _refused(tts, ["body", "text"])
        programme = _post_json(
            client, "POST", "/api/v1/programmes", {"title": value, "items": []}, admin
        )
        _refused(programme, ["body", "title"])
        source = {"name": value, "url": "http://stream.example/x", "kind": "national"}
        _refused(_post_json(client, "POST", "/api/v1/stream-sources", source, admin))
        user = {"username": "bien-tap", "password": "mat khau du dai 123", "full_name": value}
        _refused(_post_json(client, "POST", "/api/v1/users", user, admin), ["body", "full_name"])
        group = {"gid": "nhom-moi", "name": value, "stations": ["p1-kp-1"]}
        _refused(_post_json(client, "POST", "/api/v1/groups", group, admin))
        broadcast = {
            "targets": {"stations": ["lbn-cau-tre"]},
            "content": {"text": value},
            "tier": "emergency",
        }
        _refused(_post_json(client, "POST", "/api/v1/broadcasts", broadcast, admin))


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/api/v1/stations/lbn%00cau", ["path", "sid"]),
        ("/api/v1/stations?q=c%C3%A2u%00tre", ["query", "q"]),
        ("/api/v1/audit?actor=a%00b", ["query", "actor"]),
        ("/api/v1/media?q=%00", ["query", "q"]),
    ],
)
def test_path_and_query_parameters_refuse_nul(
    client: TestClient, admin: dict[str, str], path: str, loc: list[str]
) -> None:
    _refused(client.get(path, headers=admin), loc)


def test_form_fields_refuse_nul(client: TestClient, admin: dict[str, str]) -> None:
    upload = client.post(
        "/api/v1/media",
        data={"title": NUL},
        files={"file": ("a.wav", b"RIFF\x00\x00\x00\x00WAVE", "audio/wav")},
        headers=admin,
    )
    _refused(upload, ["body", "title"])


def test_undeclared_query_parameters_are_not_text(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Only what a route reads is checked: a NUL in a parameter it ignores is nobody's
    text (and an uploaded file's bytes are not text either: see the form test)."""
    assert client.get("/api/v1/auth/me?unused=%00", headers=admin).status_code == 200


def test_the_rule() -> None:
    assert text_problem("Tân An\tphường 1\n") is None
    assert text_problem(NUL) == "text contains the character U+0000 at 3"
    assert find_text_problem({"a": [{"b": SURROGATE}]}) == (("a", 0, "b"), text_problem(SURROGATE))
    assert find_text_problem({NUL: 1}) is not None
