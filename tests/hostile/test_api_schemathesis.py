"""Schemathesis over the whole OpenAPI document with an administrator's token
(issue 15: "zero server errors and zero response-schema violations").

Property-based: for every operation, Hypothesis generates requests from the document
(valid ones and, for parameters and bodies, deliberately invalid ones) and each answer
is checked: never a 5xx, the status code documented, the body conforming to the
documented schema and media type.  Bounded (``EXAMPLES`` per operation, derandomised so
a failure reproduces) to keep `make test` within its budget; set
``BROADCASTER_FUZZ_EXAMPLES`` for a longer hunt.

The service is the real app over real HTTP (uvicorn), on the database under test, with
the Tân An registry, an approved asset and a schedule so that many ids exist.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio_library.settings import AudioSettings
from broadcaster import db
from broadcaster.app import create_app
from broadcaster.auth import service as auth
from broadcaster.auth.models import TokenKind, User
from broadcaster.live.icecast import find_icecast
from broadcaster.runtime import Role as ProcessRole
from broadcaster.settings import Settings
from kernel.security import Role
from stations import tan_an
from tests.api import make_user
from tests.conftest import DatabaseUnderTest, make_settings
from tests.support.icecast import running_icecast
from tests.support.live import start_server
from tests.support.mosquitto import free_port

ADMIN = "fuzz-admin"
EXAMPLES = int(os.environ.get("BROADCASTER_FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


class Service:
    """The running API, and a way to get an administrator's token back (the fuzzer may
    log out, change the password, deactivate or delete the account it uses)."""

    def __init__(self, base_url: str, factory: sessionmaker[Session]) -> None:
        self.base_url = base_url
        self.factory = factory

    def admin_headers(self) -> dict[str, str]:
        with self.factory() as session:
            user = session.scalar(select(User).where(User.username == ADMIN))
            if user is None:
                session.rollback()
                return make_user(self.factory, ADMIN, Role.ADMIN, can_emergency=True)
            user.active, user.role, user.can_emergency = True, Role.ADMIN, True
            user.failed_logins, user.locked_until = 0, None
            token, _ = auth.issue_token(session, user, kind=TokenKind.SESSION)
            session.commit()
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def service(
    _database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("fuzz")
    _database.reset()
    url = _database.url_for_test(tmp)
    port = free_port()
    cfg = make_settings(url, tmp, f"http://127.0.0.1:{port}")
    streaming = contextlib.ExitStack()
    if find_icecast() is not None:  # live paging on a real Icecast, as deployed
        icecast = streaming.enter_context(running_icecast(tmp / "icecast"))
        cfg = cfg.model_copy(update={"live_icecast_url": SecretStr(icecast.source_url)})
    app = create_app(cfg, audio_settings=AudioSettings(), role=ProcessRole.API)
    server, thread = start_server(app, port)
    factory = app.state.sessionmaker
    with db.session_scope(factory) as session:
        tan_an.load(session)
    make_user(factory, ADMIN, Role.ADMIN, can_emergency=True)
    try:
        yield Service(f"http://127.0.0.1:{port}", factory)
    finally:
        server.should_exit = True
        thread.join(10)
        streaming.close()
        _ = pathlib.Path(tmp)


def _operations() -> list[Any]:
    """Every operation of the document (built from the app itself, no server needed)."""
    app = create_app(
        Settings(database_url=f"sqlite:///{tempfile.gettempdir()}/openapi-only.db"),
        role=ProcessRole.API,
        migrate=False,
    )
    document = schemathesis.openapi.from_dict(app.openapi())
    return [result.ok() for result in document.get_all_operations()]


OPERATIONS = _operations()


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_api_never_fails_and_matches_its_document(operation: Any, service: Service) -> None:
    """Every generated request answers without a 5xx, with a documented status, a
    documented media type and a body matching the documented schema."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=service.base_url,
            headers=service.admin_headers(),
            checks=CHECKS,
            timeout=60,
        )

    run()
