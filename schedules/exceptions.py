"""Domain exceptions of the schedules package.

    kernel.errors.DomainError
    ├── NotFoundError (LookupError)
    │   └── ProgrammeNotFound             a rule names a programme the builder was not given
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

from kernel.errors import InvalidInput, NotFoundError


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
