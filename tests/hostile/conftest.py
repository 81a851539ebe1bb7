"""The hostile suites reuse the whole-service fixture of the dispatch tests."""

from tests.dispatch.conftest import live

__all__ = ["live"]
