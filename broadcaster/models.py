"""Imports every model module so the shared metadata knows every table (Alembic, tests)."""

from audio_library import models as media_models
from broadcaster.alarms import models as alarm_models
from broadcaster.alerts import models as alert_models
from broadcaster.auth import models as auth_models
from broadcaster.broker import models as broker_models
from broadcaster.dispatch import models as dispatch_models
from kernel import audit, signals
from schedules import models as schedule_models
from stations import models as station_models

__all__ = [
    "alarm_models",
    "alert_models",
    "audit",
    "auth_models",
    "broker_models",
    "dispatch_models",
    "media_models",
    "schedule_models",
    "signals",
    "station_models",
]
