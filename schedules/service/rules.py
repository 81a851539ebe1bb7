"""Schedule rules: play a programme on targets when a recurrence fires.

Approval (`kernel.approval`): a saved rule waits for approval (``draft``), or is kept as
its author's unsubmitted draft (``submit`` false) until `submit_rule` sends it; an
approver who is not its author approves it (and with it the text bulletins its
programme generated, which were saved waiting), never an unsubmitted draft.  Editing
what an approved rule plays (its programme, its times, its targets...) sends it back to
waiting (or to the author's draft, with ``submit`` false); renaming it or switching it on
and off does not.  An edit with ``submit`` moves a rule that is not approved (a rejected
one, once fixed) to waiting or back to the author's draft.
A rule may have any tier but ``live`` (`schedules.models.RULE_TIERS`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library import service as media
from kernel.approval import Approval, on_save, require_submittable
from kernel.db import paginate, utcnow
from kernel.errors import ConflictError, InvalidInput, PermissionDeniedError
from kernel.patch import patch_changes
from kernel.security import Principal
from kernel.text import contains, fold
from kernel.tiers import Tier
from schedules.exceptions import RuleNotFound
from schedules.models import RULE_TIERS, ItemKind, Programme, ScheduleRule
from schedules.plans import ProgrammeSpec, RuleSpec, validate_rule
from schedules.recurrence import Once, Recurrence, invalid_recurrence, localize, occurrences
from schedules.schemas import RuleCreate, RuleUpdate, TargetsIn
from schedules.service.scope import in_scope, visible
from schedules.service.specs import programme_specs
from schedules.service.targets import check_targets, current_targets, look_up, set_targets
from stations.targets import TargetResolver, TargetRows

RULE_FIELDS = (
    "title",
    "programme_id",
    "tier",
    "priority",
    "order",
    "owner_area_id",
    "volume",
    "recurrence",
    "shift_tolerance_s",
    "slot_s",
    "enabled",
    "approval",
)
#: Rule fields whose change does not send an approved rule back to draft.
_HARMLESS_RULE_FIELDS = frozenset({"title", "enabled"})
_REQUIRED_ON_UPDATE = (
    "title",
    "programme_id",
    "targets",
    "tier",
    "order",
    "recurrence",
    "shift_tolerance_s",
    "enabled",
)


# --- recurrence -------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _recurrence_from_json(text: str) -> Recurrence:
    return Recurrence.model_validate_json(text)


def stored_recurrence(data: Mapping[str, Any]) -> Recurrence:
    """The `Recurrence` of a stored rule (cached by its JSON)."""
    return _recurrence_from_json(json.dumps(data, sort_keys=True, ensure_ascii=False))


def parse_rule_recurrence(data: Mapping[str, Any]) -> Recurrence:
    """Validate a request's recurrence; errors name ``recurrence.<field>``."""
    try:
        return Recurrence.model_validate(data)
    except ValidationError as exc:
        raise invalid_recurrence(exc, prefix=("recurrence",)) from exc


def ends_on(recurrence: Recurrence, tz: tzinfo) -> date | None:
    """The last local day a recurrence can fire (None: open-ended)."""
    last: date | None = None
    until = recurrence.valid_until
    if until is not None:
        last = localize(until, tz).date() if isinstance(until, dt.datetime) else until
    when = recurrence.when
    if isinstance(when, Once):
        at = localize(when.at, tz).date() if when.at.tzinfo else when.at.date()
        last = at if last is None else min(last, at)
    return last


def next_occurrences(
    recurrence: Recurrence, tz: tzinfo, *, now: dt.datetime | None = None, count: int = 3
) -> list[dt.datetime]:
    start = now or utcnow()
    found: list[dt.datetime] = []
    for horizon in (8, 400):
        found = occurrences(recurrence, start, start + dt.timedelta(days=horizon), tz)
        if len(found) >= count:
            break
    return found[:count]


# --- reading ------------------------------------------------------------------------------


def get_rule(session: Session, rule_id: int) -> ScheduleRule:
    rule = session.get(ScheduleRule, rule_id)
    if rule is None:
        raise RuleNotFound(rule_id)
    return rule


def rule_titles(session: Session, rule_ids: Collection[int]) -> dict[int, str]:
    """The titles of the given rules (what the calendar and playlist pages name them by)."""
    if not rule_ids:
        return {}
    query = select(ScheduleRule.id, ScheduleRule.title).where(ScheduleRule.id.in_(list(rule_ids)))
    return {rid: title for rid, title in session.execute(query)}


def list_rules(
    session: Session,
    *,
    scope: Collection[int] | None,
    q: str | None = None,
    approval: Approval | None = None,
    enabled: bool | None = None,
    tier: Tier | None = None,
    programme_id: int | None = None,
    owner_area_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ScheduleRule], int]:
    query = visible(select(ScheduleRule), ScheduleRule.owner_area_id, scope)
    if q:
        query = query.where(contains(ScheduleRule.title_folded, q))
    if approval is not None:
        query = query.where(ScheduleRule.approval == approval)
    if enabled is not None:
        query = query.where(ScheduleRule.enabled.is_(enabled))
    if tier is not None:
        query = query.where(ScheduleRule.tier == tier)
    if programme_id is not None:
        query = query.where(ScheduleRule.programme_id == programme_id)
    if owner_area_id is not None:
        query = query.where(ScheduleRule.owner_area_id == owner_area_id)
    order = (ScheduleRule.priority.desc(), ScheduleRule.order, ScheduleRule.id)
    return paginate(session, query.order_by(*order), limit, offset)


# --- checking -----------------------------------------------------------------------------


def _programme_for_rule(
    session: Session, programme_id: int, scope: Collection[int] | None
) -> Programme:
    programme = session.get(Programme, programme_id)
    if programme is None or not in_scope(programme.owner_area_id, scope):
        raise InvalidInput(
            f"unknown programme {programme_id}",
            field="programme_id",
            message_vi=f"Không tìm thấy chương trình {programme_id}",
        )
    return programme


def _check_tier(tier: Tier) -> None:
    if tier not in RULE_TIERS:
        allowed = ", ".join(t.value for t in Tier if t in RULE_TIERS)
        raise InvalidInput(
            f"a schedule rule cannot have the tier {tier.value!r} (one of {allowed}); "
            "live is an operator on the air: send it as a broadcast",
            field="tier",
            message_vi=f"Lịch phát không dùng mức '{tier.label_vi}'; hãy phát trực tiếp "
            "bằng chức năng phát thanh",
        )


@dataclass(frozen=True, slots=True)
class CheckedRule:
    """A rule body validated against the database (what create/update/preview share)."""

    spec: RuleSpec
    programme: ProgrammeSpec
    recurrence: Recurrence
    targets: TargetRows


def check_rule(
    session: Session,
    *,
    rule_id: int,
    title: str,
    programme_id: int,
    targets: TargetsIn,
    tier: Tier,
    order: int,
    volume: int | None,
    recurrence: Mapping[str, Any],
    shift_tolerance_s: int,
    slot_s: int | None,
    created_at: dt.datetime,
    principal: Principal | None,
    resolver: TargetResolver | None = None,
) -> CheckedRule:
    """Every check of a rule body; raises `InvalidInput` naming the field."""
    _check_tier(tier)
    scope = principal.scope if principal is not None else None
    programme = _programme_for_rule(session, programme_id, scope)
    parsed = parse_rule_recurrence(recurrence)
    rows = look_up(session, targets)
    ids = check_targets(resolver or TargetResolver(session), rows, principal=principal)
    spec = RuleSpec(
        id=rule_id,
        title=title,
        programme_id=programme.id,
        station_ids=ids,
        priority=tier.priority,
        order=order,
        created_at=created_at,
        recurrence=parsed,
        shift_tolerance_s=shift_tolerance_s,
        volume=volume,
        slot_s=slot_s,
    )
    programme_spec = programme_specs(session, [programme.id], drafts_ok=True)[programme.id]
    validate_rule(spec, programme_spec)
    return CheckedRule(spec, programme_spec, parsed, rows)


def check_body(
    session: Session,
    data: RuleCreate,
    *,
    principal: Principal | None,
    rule_id: int = 0,
    created_at: dt.datetime,
    resolver: TargetResolver | None = None,
) -> CheckedRule:
    """`check_rule` of a whole request body (a new rule, or a preview)."""
    return check_rule(
        session,
        rule_id=rule_id,
        title=data.title,
        programme_id=data.programme_id,
        targets=data.targets,
        tier=data.tier,
        order=data.order,
        volume=data.volume,
        recurrence=data.recurrence,
        shift_tolerance_s=data.shift_tolerance_s,
        slot_s=data.slot_s,
        created_at=created_at,
        principal=principal,
        resolver=resolver,
    )


def _recheck(
    session: Session,
    rule: ScheduleRule,
    *,
    changes: Mapping[str, Any],
    targets: TargetsIn,
    tier: Tier,
    principal: Principal | None,
) -> CheckedRule:
    """`check_rule` of a stored rule with `changes` applied."""

    def value(name: str) -> Any:
        return changes.get(name, getattr(rule, name))

    return check_rule(
        session,
        rule_id=rule.id,
        title=value("title"),
        programme_id=value("programme_id"),
        targets=targets,
        tier=tier,
        order=value("order"),
        volume=value("volume"),
        recurrence=value("recurrence"),
        shift_tolerance_s=value("shift_tolerance_s"),
        slot_s=value("slot_s"),
        created_at=rule.created_at,
        principal=principal,
    )


# --- writing ------------------------------------------------------------------------------


def create_rule(
    session: Session,
    data: RuleCreate,
    *,
    author: media.Author,
    principal: Principal | None,
    tz: tzinfo,
    key: str | None = None,
) -> ScheduleRule:
    """Save a new rule, waiting for approval or kept as the author's draft (``submit``),
    checked like `check_rule`."""
    now = utcnow()
    checked = check_body(session, data, principal=principal, created_at=now)
    rule = ScheduleRule(
        key=key,
        title=data.title,
        title_folded=fold(data.title),
        programme_id=data.programme_id,
        tier=data.tier,
        priority=data.tier.priority,
        order=data.order,
        owner_area_id=author.area_id,
        volume=data.volume,
        recurrence=checked.recurrence.model_dump(mode="json"),
        ends_on=ends_on(checked.recurrence, tz),
        shift_tolerance_s=data.shift_tolerance_s,
        slot_s=data.slot_s,
        enabled=data.enabled,
        approval=on_save(data.submit),
        created_by=author.name,
        created_by_id=author.user_id,
        created_at=now,
    )
    session.add(rule)
    session.flush()
    set_targets(session, rule, checked.targets)
    session.flush()
    return rule


def update_rule(
    session: Session,
    rule: ScheduleRule,
    data: RuleUpdate,
    *,
    principal: Principal | None,
    tz: tzinfo,
) -> bool:
    """Apply the changes; return True when an approved rule lost its approval."""
    changes = patch_changes(data, required=_REQUIRED_ON_UPDATE)
    submit: bool | None = changes.pop("submit", None)
    if changes.keys() <= _HARMLESS_RULE_FIELDS:
        # renaming or switching on/off: nothing to re-check, the approval stands
        for name, value in changes.items():
            setattr(rule, name, value)
        rule.title_folded = fold(rule.title)
        _resubmit(rule, submit)
        rule.updated_at = utcnow()
        session.flush()
        return False
    targets = data.targets if data.targets is not None else current_targets(session, rule)
    tier = data.tier or rule.tier
    checked = _recheck(
        session, rule, changes=changes, targets=targets, tier=tier, principal=principal
    )
    before = {name: getattr(rule, name) for name in RULE_FIELDS}
    before_targets = rule.target_names
    for name in ("title", "programme_id", "order", "volume", "shift_tolerance_s", "slot_s"):
        if name in changes:
            setattr(rule, name, changes[name])
    if "enabled" in changes:
        rule.enabled = changes["enabled"]
    rule.title_folded = fold(rule.title)
    rule.tier = tier
    rule.priority = tier.priority
    rule.recurrence = checked.recurrence.model_dump(mode="json")
    rule.ends_on = ends_on(checked.recurrence, tz)
    if data.targets is not None:
        set_targets(session, rule, checked.targets)
    changed = {name for name in RULE_FIELDS if getattr(rule, name) != before[name]}
    if rule.target_names != before_targets:
        changed.add("targets")
    reset = False
    if rule.approval is Approval.APPROVED and changed - _HARMLESS_RULE_FIELDS:
        _to_draft(rule, on_save(submit is not False))
        reset = True
    else:
        _resubmit(rule, submit)
    rule.updated_at = utcnow()
    session.flush()
    return reset


def delete_rule(session: Session, rule: ScheduleRule) -> None:
    session.delete(rule)
    session.flush()


def _to_draft(rule: ScheduleRule, approval: Approval = Approval.DRAFT) -> None:
    """Back to waiting for approval (or to the author's draft), the last decision
    forgotten (the audit log keeps it)."""
    rule.approval = approval
    rule.approved_by = None
    rule.approved_by_id = None
    rule.approved_at = None
    rule.approval_note = None


def _resubmit(rule: ScheduleRule, submit: bool | None) -> None:
    """An edit's ``submit`` on a rule that is not approved: waiting (true) or the
    author's draft (false).  An approved rule keeps its approval."""
    if submit is None or rule.approval is Approval.APPROVED:
        return
    wanted = on_save(submit)
    if rule.approval is not wanted:
        _to_draft(rule, wanted)


def submit_rule(session: Session, rule: ScheduleRule) -> None:
    """Send an unsubmitted (or rejected, then fixed) rule for approval."""
    require_submittable(rule.approval, what=f"schedule rule {rule.id}", what_vi="Lịch phát này")
    _to_draft(rule)
    rule.updated_at = utcnow()
    session.flush()


def reset_rules(session: Session, *, programme_ids: Collection[int]) -> list[int]:
    """Send the approved rules playing these programmes back to draft; their ids."""
    rules = list(
        session.scalars(
            select(ScheduleRule).where(
                ScheduleRule.programme_id.in_(programme_ids),
                ScheduleRule.approval == Approval.APPROVED,
            )
        )
    )
    for rule in rules:
        _to_draft(rule)
    return [rule.id for rule in rules]


def review_rule(
    session: Session,
    rule: ScheduleRule,
    *,
    approver: media.Author,
    approve: bool,
    note: str | None,
) -> list[int]:
    """Approve or reject a rule; approving also approves the draft text bulletins its
    programme generated.  Returns the ids of the assets approved with it.

    The approver is never the rule's author, nor the author of those bulletins; an
    unsubmitted draft is refused (its author has not sent it yet).
    """
    if rule.approval is Approval.UNSUBMITTED:
        raise ConflictError(
            f"schedule rule {rule.id} is an unsubmitted draft; its author has not sent it "
            "for approval",
            message_vi="Lịch phát này còn là bản nháp, người tạo chưa gửi duyệt",
        )
    if rule.created_by_id is not None and rule.created_by_id == approver.user_id:
        raise PermissionDeniedError(
            "the author of a schedule rule cannot approve or reject it",
            message_vi="Người tạo không được tự duyệt lịch phát của mình",
        )
    approved_assets: list[int] = []
    if approve:
        targets = current_targets(session, rule)
        _recheck(session, rule, changes={}, targets=targets, tier=rule.tier, principal=None)
        text_assets = media.assets_by_id(
            session,
            {
                i.asset_id
                for i in rule.programme.items
                if i.kind is ItemKind.TEXT and i.asset_id is not None
            },
        )
        drafts = [a for a in sorted(text_assets.values(), key=lambda a: a.id) if a.spoken_draft]
        for asset in drafts:
            if asset.created_by_id is not None and asset.created_by_id == approver.user_id:
                raise PermissionDeniedError(
                    f"you wrote the text bulletin {asset.id} this rule plays; "
                    "another approver must approve it",
                    message_vi="Người soạn bản tin không được tự duyệt bản tin của mình",
                )
        for asset in drafts:
            media.set_approval(
                session,
                asset,
                approver=approver,
                approve=True,
                note=f"Duyệt cùng lịch phát #{rule.id}" + (f": {note}" if note else ""),
            )
            approved_assets.append(asset.id)
    rule.approval = Approval.APPROVED if approve else Approval.REJECTED
    rule.approved_by = approver.name
    rule.approved_by_id = approver.user_id
    rule.approved_at = utcnow()
    rule.approval_note = note
    session.flush()
    return approved_assets
