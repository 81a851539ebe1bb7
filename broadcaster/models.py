"""Imports every model module so the shared metadata knows every table (Alembic, tests)."""

from audio_library import models as media_models
from broadcaster.auth import models as auth_models
from kernel import audit, signals
from stations import models as station_models

__all__ = ["audit", "auth_models", "media_models", "signals", "station_models"]
