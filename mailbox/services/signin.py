"""Sign-in writes: a manager lifting a lockout, and the wards a directory sign-in maps its groups to."""

from __future__ import annotations

from typing import Any

from axes.utils import reset
from django.contrib.auth.models import Group
from django.db import transaction

from mailbox.events import broadcast_memberships_changed
from mailbox.models import Mailbox
from mailbox.selectors.signin import ADDRESS, USERNAME
from mailbox.services import members
from mailbox.services.audit import audit_record


@transaction.atomic
def lockout_release(*, actor: Any, kind: str, value: str) -> int:
    """Lift the lockout of an account (by the name that was tried) or of an address; the failures that caused it
    are forgotten. Audited with who did it; returns the number of failure records removed."""
    if kind == USERNAME:
        removed = reset(username=value)
    elif kind == ADDRESS:
        removed = reset(ip=value)
    else:
        raise ValueError(f"unknown lockout kind {kind!r}")
    audit_record(actor=actor, action="signin.unlocked", kind=kind, value=value, removed=removed)
    return removed


def _dn_key(dn: str) -> str:
    # Directories compare DNs without case and without spaces around the separators.
    return ",".join(part.strip() for part in dn.lower().split(","))


@transaction.atomic
def wards_from_directory(*, user: Any, group_dns: set[str], mapping: dict[str, str]) -> tuple[list[str], list[str]]:
    """Make the user a member of exactly the mapped wards (Django groups) their directory groups name. Groups the
    mapping does not name are left alone: a ward given in the portal stays. Returns (joined, left)."""
    have = {_dn_key(dn) for dn in group_dns}
    wanted = {ward for dn, ward in mapping.items() if _dn_key(dn) in have}
    mapped = set(mapping.values())
    current = set(user.groups.filter(name__in=mapped).values_list("name", flat=True))
    joined, left = sorted(wanted - current), sorted(current - wanted)
    # The directory decides: a ward left is left even by a mailbox's last owner, but the managers are told.
    owned = (
        members.owned_with_an_owner(Group.objects.filter(name__in=left).values_list("pk", flat=True)) if left else []
    )
    with members.group_change_handled():  # handed over below, audited as the directory's sync
        for name in joined:
            group, _ = Group.objects.get_or_create(name=name)
            user.groups.add(group)
        if left:
            user.groups.remove(*Group.objects.filter(name__in=left))
    if joined or left:
        audit_record(actor=user, action="signin.wards_synced", joined=joined, left=left)
        # As when a manager moves someone between wards (mailbox.services.manage): a ward left hands its open work
        # back, one joined gives drafts back. By the system: the directory decided, not the person signing in.
        wards = Group.objects.filter(name__in=[*joined, *left])
        for mailbox in Mailbox.objects.filter(memberships__group__in=wards).distinct().order_by("pk"):
            members.access_changed(actor=None, mailbox=mailbox, user_ids=[user.pk])
        members.owners_lost(actor=None, mailbox_ids=owned, people=[user], reason="directory")
        broadcast_memberships_changed(user_ids=[user.pk])
    return joined, left
