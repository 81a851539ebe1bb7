"""The approval workflow's one vocabulary.

Media assets and schedule rules are approved or rejected by an approver who is not the
author (Circular 39/2020: bulletins are approved by a leader before they air).  Only
approved content and rules reach stations.

The states (stored and in the API as their values):

- ``unsubmitted`` (*Nháp*): a draft its author keeps and may still change; no approver
  sees it until it is submitted (``.../submit``);
- ``draft`` (*Chờ duyệt*): waiting for an approver.  What is created without asking
  for a draft starts here, as it always has (the value keeps its historic name);
- ``approved`` (*Đã duyệt*) and ``rejected`` (*Bị từ chối*, with the reason).

An approver decides only what waits (``draft``, or a decision taken before); an
unsubmitted draft is refused.  Its author submits an unsubmitted or rejected item.
"""

from __future__ import annotations

from enum import StrEnum

from kernel.errors import ConflictError

__all__ = ["APPROVAL_LABELS_VI", "SUBMITTABLE", "Approval", "on_save", "require_submittable"]


class Approval(StrEnum):
    UNSUBMITTED = "unsubmitted"
    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"


APPROVAL_LABELS_VI: dict[Approval, str] = {
    Approval.UNSUBMITTED: "Nháp",
    Approval.DRAFT: "Chờ duyệt",
    Approval.APPROVED: "Đã duyệt",
    Approval.REJECTED: "Bị từ chối",
}
"""What the dashboard says for each approval state (``draft`` means waiting for an
approver; ``unsubmitted`` is the author's own draft)."""

#: The states an author may submit for approval (a rejected item once it is fixed).
SUBMITTABLE = frozenset({Approval.UNSUBMITTED, Approval.REJECTED})


def on_save(submit: bool) -> Approval:
    """The state an item gets when it is saved and (``submit``) sent for approval, or
    kept as its author's draft."""
    return Approval.DRAFT if submit else Approval.UNSUBMITTED


def require_submittable(approval: Approval, *, what: str, what_vi: str) -> None:
    """Refuse (409) to submit `what` (``what_vi`` for people, e.g. "Lịch phát này")
    when it already waits or is approved."""
    if approval not in SUBMITTABLE:
        label = APPROVAL_LABELS_VI[approval].lower()
        raise ConflictError(
            f"{what} is {approval.value}; only an unsubmitted or rejected one can be submitted",
            message_vi=f"{what_vi} đang ở trạng thái “{label}”, không cần gửi duyệt",
        )
