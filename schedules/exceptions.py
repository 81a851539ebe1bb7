"""Domain exceptions of the schedules package.

    kernel.errors.DomainError
    ├── NotFoundError (LookupError)
    │   ├── ProgrammeNotFound             a rule names a programme the builder was not given
    │   │                                 (also: no such programme, or not in your areas)
    │   ├── RuleNotFound                  no such schedule rule (or not in your areas)
    │   └── StreamSourceNotFound          no such stream source (or not in your areas)
    ├── ConflictError
    │   ├── ProgrammeInUse                a programme rules still play cannot be deleted
    │   └── StreamSourceInUse             a source programmes still relay cannot be deleted
    ├── PermissionDeniedError
    │   └── CalendarLinkRejected          a signed calendar link that must not be served
    │       ├── CalendarLinkInvalid       forged, altered or malformed
    │       └── CalendarLinkExpired       genuine, but too late
    └── InvalidInput (ValueError)
        ├── InvalidRecurrence             a recurrence that cannot be expanded (bad RRULE,
        │                                 window ending before it starts, lunar date that
        │                                 does not exist...)
        └── InvalidRule                   a rule/programme pair that cannot be scheduled
                                          (empty programme, longer than its slot,
                                          priority out of range...)

Every error carries ``loc`` (the dotted field, through ``InvalidInput(field=...)``) and an
English ``message`` with a Vietnamese ``message_vi`` where one is useful.
"""

from __future__ import annotations

from kernel.errors import ConflictError, InvalidInput, NotFoundError, PermissionDeniedError


class InvalidRecurrence(InvalidInput):
    """A recurrence that is well-formed JSON but cannot be expanded."""


class InvalidRule(InvalidInput):
    """A schedule rule (with its programme) that cannot be placed on the air."""


class ProgrammeNotFound(NotFoundError):
    """A rule refers to a programme that is not among the programmes given."""

    def __init__(self, programme_id: int, *, rule_id: int | None = None) -> None:
        where = f" (rule {rule_id})" if rule_id is not None else ""
        super().__init__(
            f"Programme {programme_id} not found{where}",
            message_vi=f"Không tìm thấy chương trình {programme_id}{where}",
        )
        self.programme_id = programme_id
        self.rule_id = rule_id


class RuleNotFound(NotFoundError):
    def __init__(self, rule_id: int) -> None:
        super().__init__(
            f"Schedule rule {rule_id} not found",
            message_vi=f"Không tìm thấy lịch phát {rule_id}",
        )


class StreamSourceNotFound(NotFoundError):
    def __init__(self, source_id: int) -> None:
        super().__init__(
            f"Stream source {source_id} not found",
            message_vi=f"Không tìm thấy nguồn tiếp sóng {source_id}",
        )


class ProgrammeInUse(ConflictError):
    """A programme that schedule rules still play."""


class StreamSourceInUse(ConflictError):
    """A stream source that programmes still relay."""


class CalendarLinkRejected(PermissionDeniedError):
    """A signed calendar-feed link that must not be served."""


class CalendarLinkInvalid(CalendarLinkRejected):
    """The signature does not match the path, the parameters and the expiry."""


class CalendarLinkExpired(CalendarLinkRejected):
    """The signature is genuine but its expiry has passed."""
