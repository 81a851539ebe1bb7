"""The approval workflow's one vocabulary.

Media assets and schedule rules start as a ``draft``; an approver who is not the author
approves or rejects them (Circular 39/2020: bulletins are approved by a leader before
they air).  Only approved content and rules reach stations.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["APPROVAL_LABELS_VI", "Approval"]


class Approval(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"


APPROVAL_LABELS_VI: dict[Approval, str] = {
    Approval.DRAFT: "Chờ duyệt",
    Approval.APPROVED: "Đã duyệt",
    Approval.REJECTED: "Bị từ chối",
}
"""What the dashboard says for each approval state (a new draft is waiting for an
approver: there is no separate "submit" step)."""
