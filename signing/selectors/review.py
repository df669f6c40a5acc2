"""Reads of the review before signature: the reviewer's list, a draft's versions and review steps, the rules."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from mailbox.models import Mailbox
from signing.models import Draft, DraftVersion, ReviewRule, ReviewStep


def review_list_for_user(user: Any) -> QuerySet[Draft]:
    """Open drafts waiting for this user's review (found through the user's selector: an ex-member of the
    sending mailbox no longer sees them)."""
    return (
        Draft.objects.visible_to(user)
        .filter(reviewer_id=user.pk, review_state=Draft.Review.PENDING, state__in=Draft.OPEN_STATES)
        .select_related("author", "signer", "reviewer")
        .order_by("created_at", "id")
    )


def review_count_for_user(user: Any) -> int:
    return review_list_for_user(user).count()


def draft_versions(draft: Draft) -> QuerySet[DraftVersion]:
    """The versions of a draft already found through the user's selector, oldest first."""
    return draft.versions.select_related("created_by", "signer", "mailbox").order_by("number")


def draft_version_get(draft: Draft, number: int) -> DraftVersion:
    return draft_versions(draft).get(number=number)


def review_steps(draft: Draft) -> QuerySet[ReviewStep]:
    return draft.review_steps.select_related("actor", "reviewer").order_by("created_at", "id")


def last_return(draft: Draft) -> ReviewStep | None:
    """The latest "zurückgegeben" with its comment, while the draft is returned (what the author is to change)."""
    if draft.review_state != Draft.Review.RETURNED:
        return None
    return (
        draft.review_steps.select_related("actor")
        .filter(action=ReviewStep.Action.RETURNED)
        .order_by("-created_at", "-id")
        .first()
    )


def review_rules() -> QuerySet[ReviewRule]:
    return ReviewRule.objects.select_related("mailbox", "created_by").order_by("mailbox__display_name", "document_type")


def department_mailboxes() -> QuerySet[Mailbox]:
    """The departments a rule can be set for: active functional mailboxes."""
    return Mailbox.objects.filter(kind=Mailbox.Kind.FUNCTIONAL, is_active=True).order_by("display_name")
