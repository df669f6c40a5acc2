"""Receivers that keep per-request values true after a write in the same request (kimportal.requestscope), and
the consequences of switching an account off or of joining and leaving groups."""

from __future__ import annotations

from typing import Any

from kimportal.requestscope import scope_clear


def access_changed(sender: Any, **kwargs: Any) -> None:
    """A membership, user, group membership or mailbox changed: roles read earlier in this request are stale."""
    scope_clear()


def _note_active(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Before a user is saved: whether the account was active (not for saves that leave is_active alone, such as
    the last_login of every sign-in)."""
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    instance._was_active = sender.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()


def _deactivated(sender: Any, instance: Any, **kwargs: Any) -> None:
    """An account switched off hands its open work back (mailbox.services.members.account_deactivated); switched on
    again, it gets its drafts back where it can work (account_reactivated)."""
    was_active = instance.__dict__.pop("_was_active", None)
    if was_active and not instance.is_active:
        from mailbox.services.members import account_deactivated

        account_deactivated(person=instance)
    elif was_active is False and instance.is_active:
        from mailbox.services.members import account_reactivated

        account_reactivated(person=instance)


def _groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """User.groups changed anywhere (the Django admin's user form, user.groups.add/remove, group.user_set …): a
    group that is a member of a mailbox gives or takes the right to process there, with the same consequences as a
    membership change (mailbox.services.members.groups_changing / groups_changed). The right is read before
    (pre_*) and after (post_*) the change; the reading waits on the instance in between."""
    if action not in ("pre_add", "pre_remove", "pre_clear", "post_add", "post_remove", "post_clear"):
        return
    from mailbox.services import members

    if action.startswith("post_"):
        members.groups_changed(instance.__dict__.pop("_groups_changing", None), joined=action == "post_add")
        return
    if reverse:  # group.user_set.<action>(users): the instance is the group
        group_ids = [instance.pk]
        user_ids = list(pk_set) if pk_set is not None else list(instance.user_set.values_list("pk", flat=True))
    else:
        user_ids = [instance.pk]
        group_ids = list(pk_set) if pk_set is not None else list(instance.groups.values_list("pk", flat=True))
    instance.__dict__["_groups_changing"] = members.groups_changing(
        user_ids=user_ids, group_ids=group_ids, leaving=action != "pre_add"
    )


def connect() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

    from mailbox.models import Mailbox, Membership

    user_model = get_user_model()
    for model in (Membership, Mailbox, user_model):
        post_save.connect(access_changed, sender=model, dispatch_uid=f"scope-{model.__name__}-save")
        post_delete.connect(access_changed, sender=model, dispatch_uid=f"scope-{model.__name__}-delete")
    m2m_changed.connect(access_changed, sender=user_model.groups.through, dispatch_uid="scope-user-groups")
    # After the scope is cleared: the rights read after the change must not come from before it.
    m2m_changed.connect(_groups_changed, sender=user_model.groups.through, dispatch_uid="user-groups-access")
    pre_save.connect(_note_active, sender=user_model, dispatch_uid="user-active-before")
    post_save.connect(_deactivated, sender=user_model, dispatch_uid="user-deactivated")
