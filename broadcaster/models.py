"""Imports every model module so the shared metadata knows every table (Alembic, tests)."""

from broadcaster.auth import models as auth_models
from kernel import audit
from stations import models as station_models

__all__ = ["audit", "auth_models", "station_models"]
