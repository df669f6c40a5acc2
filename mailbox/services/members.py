"""Owners manage who may read and work a mailbox."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mailbox import events, selectors
from mailbox.errors import PortalError
from mailbox.models import Mailbox, Membership, Notification
from mailbox.services.audit import audit_record
from mailbox.services.work import NotAllowed


def _require_owner(user, mailbox: Mailbox) -> None:
    if not selectors.can(selectors.user_role(user, mailbox), "manage"):
        raise NotAllowed(_("Nur Eigentümer des Postfachs dürfen Mitglieder verwalten."))


@transaction.atomic
def membership_set(*, user, mailbox: Mailbox, username: str = "", group_name: str = "", role: str) -> Membership:
    _require_owner(user, mailbox)
    if role not in Membership.Role.values:
        raise PortalError(_("Unbekannte Rolle."))
    if username:
        member = get_user_model().objects.filter(username=username, is_active=True).first()
        if member is None:
            raise PortalError(_("Benutzer „%(name)s“ gibt es nicht.") % {"name": username})
        membership, _created = Membership.objects.update_or_create(
            mailbox=mailbox, user=member, defaults={"role": role}
        )
    else:
        group = Group.objects.filter(name=group_name).first()
        if group is None:
            raise PortalError(_("Gruppe „%(name)s“ gibt es nicht.") % {"name": group_name})
        membership, _created = Membership.objects.update_or_create(
            mailbox=mailbox, group=group, defaults={"role": role}
        )
    _keep_an_owner(mailbox)
    events.broadcast_memberships_changed(user_ids=_affected_users(membership))
    audit_record(
        actor=user,
        action="membership.set",
        mailbox=mailbox,
        member=username or None,
        group=group_name or None,
        role=role,
    )
    return membership


@transaction.atomic
def membership_remove(*, user, mailbox: Mailbox, membership_id: int) -> None:
    _require_owner(user, mailbox)
    membership = Membership.objects.select_related("user", "group").get(pk=membership_id, mailbox=mailbox)
    affected = _affected_users(membership)
    membership.delete()
    _keep_an_owner(mailbox)
    events.broadcast_memberships_changed(user_ids=affected)
    audit_record(
        actor=user,
        action="membership.removed",
        mailbox=mailbox,
        member=membership.user.username if membership.user else None,
        group=membership.group.name if membership.group else None,
    )


def _keep_an_owner(mailbox: Mailbox) -> None:
    # A mailbox nobody may manage any more is a support call: refuse the change instead.
    if not Membership.objects.filter(mailbox=mailbox, role=Membership.Role.OWNER).exists():
        raise PortalError(_("Ein Postfach braucht mindestens einen Eigentümer."))


@transaction.atomic
def notifications_mark_read(*, user, ids: list[int] | None = None) -> int:
    qs = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=timezone.now())


def _affected_users(membership: Membership) -> list[int]:
    if membership.user_id:
        return [membership.user_id]
    return list(get_user_model().objects.filter(groups=membership.group_id).values_list("pk", flat=True))
