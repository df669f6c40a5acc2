"""Review before signature: a resident prepares, a senior approves or sends the draft back with a comment, the
physician with the eHBA signs exactly the approved version.

Which drafts need it: a department (the draft's sending functional mailbox) names the document types it has
reviewed (ReviewRule, set by managers); anyone may also ask for a review of a single draft.
Who reviews: one chosen person among the mailbox's members (processing role or more) who hold the permission
signing.review_draft (senior physicians, granted per user or group) — never the author — by default the signer
when they qualify. Only that person approves or returns; the author or signer may choose another. A member who
leaves the mailbox can no longer see or approve the draft.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from audit.services import event_record
from kimportal.errors import Conflict, NotAllowed, PortalError
from mailbox.models import Mailbox, Membership, Notification
from mailbox.permissions import Action, can, members_q, user_role
from mailbox.services.notifications import notify
from signing import events
from signing.models import Draft, DraftVersion, ReviewRule, ReviewStep
from signing.permissions import require_edit
from signing.services.audit import signing_audit

REVIEW_PERMISSION = ("signing", "review_draft")
COMMENT_LIMIT = 2000


def review_required(mailbox: Mailbox | int, document_type: str) -> bool:
    """Does this department have this document type reviewed before it is signed?"""
    mailbox_id = mailbox if isinstance(mailbox, int) else mailbox.pk
    return ReviewRule.objects.filter(mailbox_id=mailbox_id, document_type=document_type).exists()


def _permission_q() -> Q:
    app_label, codename = REVIEW_PERMISSION
    perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    return Q(is_superuser=True) | Q(user_permissions__in=perm) | Q(groups__permissions__in=perm)


def reviewer_candidates(mailbox: Mailbox | int, *, author: Any = None) -> QuerySet[Any]:
    """Who may review drafts sent from this mailbox: active members with the processing role or more (directly or
    through a group) holding the permission signing.review_draft; the author never reviews their own draft."""
    mailbox_id = mailbox if isinstance(mailbox, int) else mailbox.pk
    roles = [r for r in Membership.RANK if can(r, Action.PROCESS)]
    memberships = Membership.objects.filter(mailbox_id=mailbox_id, mailbox__is_active=True, role__in=roles)
    qs = get_user_model().objects.filter(members_q(memberships), _permission_q(), is_active=True)
    if author is not None:
        qs = qs.exclude(pk=author.pk if hasattr(author, "pk") else author)
    # The joins over groups and permissions repeat rows: the ids, then the users once each.
    return get_user_model().objects.filter(pk__in=qs.values("pk")).order_by("last_name", "first_name", "username")


def version_maker_id(draft: Draft) -> int | None:
    """Who made the draft's current version (the author, or the signer who changed it): they do not approve it."""
    return (
        DraftVersion.objects.filter(draft_id=draft.pk, number=draft.version).values_list("created_by_id", flat=True)
    ).first()


def draft_reviewer_candidates(draft: Draft) -> QuerySet[Any]:
    """Who may be chosen to review this draft at its current version: never its author, nor whoever made this
    version (a signer who changes the letter does not approve the change: four eyes on every version)."""
    candidates = reviewer_candidates(draft.mailbox_id, author=draft.author_id)
    maker = version_maker_id(draft)
    return candidates.exclude(pk=maker) if maker is not None else candidates


def can_review(user: Any, draft: Draft) -> bool:
    """May the user approve or return this draft now: its chosen reviewer, still a qualified member."""
    if not getattr(user, "is_authenticated", False) or draft.reviewer_id != user.pk:
        return False
    return _qualifies(user, draft)


def _qualifies(user: Any, draft: Draft) -> bool:
    if user.pk in (draft.author_id, version_maker_id(draft)):
        return False
    if not can(user_role(user, draft.mailbox_id), Action.PROCESS):
        return False
    return get_user_model().objects.filter(_permission_q(), pk=user.pk, is_active=True).exists()


def _default_reviewer(draft: Draft) -> Any:
    """The reviewer kept from before if still qualified, else the signer if qualified, else nobody yet."""
    candidates = draft_reviewer_candidates(draft)
    for pk in (draft.reviewer_id, draft.signer_id):
        if pk is not None and candidates.filter(pk=pk).exists():
            return candidates.get(pk=pk)
    return None


def _name(user: Any) -> str:
    if user is None:
        return ""
    return str(user.get_full_name() or user.get_username())


def _params(draft: Draft, actor: Any, via: str, comment: str = "") -> dict[str, Any]:
    params: dict[str, Any] = {
        "draft": draft.pk,
        # The notification quotes subject and patient: shown only while its reader is a member of this mailbox.
        "mailbox_id": draft.mailbox_id,
        "name": via or _name(actor),
        "subject": f"{draft.subject} ({draft.patient_reference})",
    }
    if comment:
        params["note"] = comment[:300]
    return params


def _recipients(users: Sequence[Any], actor: Any) -> list[Any]:
    seen: dict[int, Any] = {}
    for u in users:
        if u is not None and u.pk != getattr(actor, "pk", None):
            seen.setdefault(u.pk, u)
    return list(seen.values())


def _broadcast(draft: Draft, *extra: int | None) -> None:
    ids = [draft.author_id, draft.signer_id, draft.reviewer_id, *extra]
    events.broadcast_drafts_changed(user_ids=[i for i in ids if i is not None], draft_ids=[draft.pk])


def _clean_comment(comment: str) -> str:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_LIMIT:
        raise PortalError(_("Der Kommentar ist zu lang (höchstens %(n)s Zeichen).") % {"n": COMMENT_LIMIT})
    return comment


def review_start(*, draft: Draft, actor: Any, via: str = "", reviewer: Any = None, comment: str = "") -> Draft:
    """Put a (locked, saved) draft into review at its current version; called by the draft services when a
    rule applies or someone asks for a review. Notifies the reviewer. The caller holds the transaction."""
    old_reviewer = draft.reviewer_id
    if reviewer is not None:
        if not draft_reviewer_candidates(draft).filter(pk=reviewer.pk).exists():
            raise PortalError(
                _(
                    "%(name)s kann diesen Entwurf nicht prüfen (Mitglied mit Prüfrecht, weder Verfasser noch wer "
                    "diese Fassung geändert hat)."
                )
                % {"name": _name(reviewer)}
            )
    else:
        reviewer = _default_reviewer(draft)
    draft.review_state = Draft.Review.PENDING
    draft.reviewer = reviewer
    draft.approved_version = None
    draft.save(update_fields=["review_state", "reviewer", "approved_version"])
    ReviewStep.objects.create(
        draft=draft,
        version=draft.version,
        action=ReviewStep.Action.REQUESTED,
        actor=actor,
        via=via,
        reviewer=reviewer,
        comment=comment,
    )
    signing_audit(
        actor=actor,
        action="signing.review_requested",
        draft=draft,
        version=draft.version,
        reviewer=reviewer.pk if reviewer is not None else None,
        via=via,
    )
    if reviewer is not None:
        notify(
            _recipients([reviewer], actor),
            kind=Notification.Kind.REVIEW_REQUESTED,
            message=None,
            actor=actor,
            params=_params(draft, actor, via, comment),
        )
    _broadcast(draft, old_reviewer)
    return draft


def _locked(draft: Draft, version: int) -> Draft:
    current = (
        Draft.objects.select_for_update(of=("self",)).select_related("author", "signer", "reviewer").get(pk=draft.pk)
    )
    if current.version != version:
        raise Conflict(
            _("Der Entwurf wurde inzwischen geändert (jetzt Fassung %(v)s). Bitte prüfen Sie die aktuelle Fassung.")
            % {"v": current.version},
            fresh=current,
        )
    return current


@transaction.atomic
def review_request(*, user: Any, draft: Draft, version: int, reviewer: Any = None, comment: str = "") -> Draft:
    """Author or signer asks for a review of this version (again, after it came back; or choose another
    reviewer). A draft approved at this version needs no new request."""
    comment = _clean_comment(comment)
    current = _locked(draft, version)
    require_edit(user, current)
    if not current.is_open:
        raise NotAllowed(_("Der Entwurf wird gerade signiert, ist signiert oder zurückgezogen."))
    if current.review_state == Draft.Review.APPROVED and current.approved_version == current.version:
        raise Conflict(_("Diese Fassung ist bereits freigegeben."), fresh=current)
    if reviewer is None and current.reviewer_id is None and _default_reviewer(current) is None:
        raise PortalError(_("Bitte wählen Sie, wer prüfen soll."))
    return review_start(draft=current, actor=user, reviewer=reviewer, comment=comment)


def _review_check(user: Any, current: Draft) -> None:
    if not current.is_open:
        raise NotAllowed(_("Der Entwurf wird gerade signiert, ist signiert oder zurückgezogen."))
    if current.reviewer_id != user.pk:
        raise NotAllowed(_("Nur die gewählte Prüferin oder der gewählte Prüfer kann diesen Entwurf prüfen."))
    if not _qualifies(user, current):
        if version_maker_id(current) == user.pk:
            raise NotAllowed(
                _("Sie haben diese Fassung selbst geändert: Freigeben muss sie eine andere Person (vier Augen).")
            )
        raise NotAllowed(
            _("Sie dürfen Entwürfe dieses Postfachs nicht (mehr) prüfen: Prüfrecht oder Mitgliedschaft fehlen.")
        )


# What each decision records, whom it tells and how.
_DECISIONS = {
    ReviewStep.Action.APPROVED: ("signing.review_approved", Notification.Kind.REVIEW_APPROVED),
    ReviewStep.Action.RETURNED: ("signing.review_returned", Notification.Kind.REVIEW_RETURNED),
}


def _decided(current: Draft, user: Any, action: ReviewStep.Action, comment: str, told: list[Any]) -> Draft:
    """A reviewer's decision on the (locked) draft at its version: saved, recorded as a step, audited, the others
    told (bell) and their pages refreshed."""
    audit_action, kind = _DECISIONS[action]
    current.save(update_fields=["review_state", "approved_version"])
    ReviewStep.objects.create(draft=current, version=current.version, action=action, actor=user, comment=comment)
    signing_audit(actor=user, action=audit_action, draft=current, version=current.version)
    notify(
        _recipients(told, user),
        kind=kind,
        message=None,
        actor=user,
        params=_params(current, user, "", comment),
    )
    _broadcast(current)
    return current


@transaction.atomic
def review_approve(*, user: Any, draft: Draft, version: int, comment: str = "") -> Draft:
    """Approve exactly this version for signature. Approving it again (a second tab) changes nothing."""
    comment = _clean_comment(comment)
    current = _locked(draft, version)
    already = current.review_state == Draft.Review.APPROVED and current.approved_version == version
    if already and current.reviewer_id == user.pk:
        return current
    _review_check(user, current)
    if current.review_state != Draft.Review.PENDING:
        raise Conflict(_("Dieser Entwurf liegt nicht zur Prüfung vor."), fresh=current)
    current.review_state = Draft.Review.APPROVED
    current.approved_version = version
    return _decided(current, user, ReviewStep.Action.APPROVED, comment, [current.signer, current.author])


@transaction.atomic
def review_approve_many(*, user: Any, selected: Sequence[tuple[int, int]]) -> list[Draft]:
    """Approve several drafts at the versions the page showed ((draft id, version) pairs): all or none."""
    if not selected:
        raise PortalError(_("Bitte wählen Sie mindestens einen Entwurf aus."))
    wanted = dict(selected)
    visible = Draft.objects.visible_to(user).filter(pk__in=wanted)
    # Locked in one order (by id) so two overlapping approvals cannot deadlock.
    drafts = list(Draft.objects.select_for_update().filter(pk__in=visible.values("pk")).order_by("pk"))
    if len(drafts) != len(wanted):
        raise NotAllowed(_("Einige der gewählten Entwürfe können Sie nicht prüfen."))
    return [review_approve(user=user, draft=d, version=wanted[d.pk]) for d in drafts]


@transaction.atomic
def review_return(*, user: Any, draft: Draft, version: int, comment: str) -> Draft:
    """Send this version back to its author with a comment (required): the author revises, then it is reviewed
    again."""
    comment = _clean_comment(comment)
    if not comment:
        raise PortalError(_("Bitte schreiben Sie, was zu ändern ist."))
    current = _locked(draft, version)
    _review_check(user, current)
    if current.review_state != Draft.Review.PENDING:
        raise Conflict(_("Dieser Entwurf liegt nicht zur Prüfung vor."), fresh=current)
    current.review_state = Draft.Review.RETURNED
    current.approved_version = None
    return _decided(current, user, ReviewStep.Action.RETURNED, comment, [current.author, current.signer])


def review_refusal(draft: Draft) -> str:
    """Why this draft cannot be signed yet because of its review ("" when the review does not hold it)."""
    if not draft.needs_approval:
        return ""
    if draft.review_state == Draft.Review.RETURNED:
        return _("Zurückgegeben: Die Verfasserin oder der Verfasser überarbeitet den Entwurf.")
    if draft.review_state == Draft.Review.PENDING:
        return _("In Prüfung: Erst nach der Freigabe kann signiert werden.")
    return _("Diese Fassung ist nicht freigegeben: Nach einer Änderung muss erneut freigegeben werden.")


@transaction.atomic
def review_rule_set(*, manager: Any, mailbox: Mailbox, document_type: str, required: bool) -> bool:
    """A manager sets whether the department (functional mailbox) has this document type reviewed; audited.
    Applies to drafts created or changed from now on. Returns whether anything changed."""
    from mailbox.permissions import is_manager
    from signing.doctypes import document_type_choices

    if not is_manager(manager):
        raise NotAllowed(_("Nur die Leitung legt fest, was geprüft wird."))
    if required:
        if mailbox.kind != Mailbox.Kind.FUNCTIONAL or not mailbox.is_active:
            raise PortalError(_("Prüfregeln gelten für aktive Funktionspostfächer (Abteilungen)."))
        if document_type not in {code for code, _label in document_type_choices()}:
            raise PortalError(_("Unbekannter Dokumenttyp."))
        _rule, created = ReviewRule.objects.get_or_create(
            mailbox=mailbox, document_type=document_type, defaults={"created_by": manager}
        )
        changed = created
    else:
        changed = ReviewRule.objects.filter(mailbox=mailbox, document_type=document_type).delete()[0] > 0
    if changed:
        event_record(
            actor=manager,
            action="signing.review_rule_added" if required else "signing.review_rule_removed",
            mailbox_id=mailbox.pk,
            mailbox_address=mailbox.address,
            details={"document_type": document_type},
        )
    return changed
