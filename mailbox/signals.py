"""Receivers that keep per-request values true after a write in the same request (kimportal.requestscope), the
consequences of switching an account off or of joining and leaving groups, and the audit of accounts and groups
deleted, groups renamed and permissions held directly changed (mailbox.services.auth_changes)."""

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


def _deleting(sender: Any, instance: Any, origin: Any = None, **kwargs: Any) -> None:
    """Before a user or group is deleted (in the delete's transaction): who it is, what it owns and whose work goes
    back, read while it still exists; audited and handed over after the delete (_deleted). `origin`: what the
    delete was called on — a queryset deletes several, whose mailboxes are locked together."""
    from django.contrib.auth.models import Group

    from mailbox.services import auth_changes

    if sender is Group:
        instance.__dict__["_deleting"] = auth_changes.group_deleting(instance, origin=origin)
    else:
        instance.__dict__["_deleting"] = auth_changes.user_deleting(instance, origin=origin)


def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    from django.contrib.auth.models import Group

    from mailbox.services import auth_changes

    deleting = instance.__dict__.pop("_deleting", None)
    if sender is Group:
        auth_changes.deleted(deleting, action="group.deleted", reason="group_deleted")
    else:
        auth_changes.deleted(deleting, action="user.deleted", reason="user_deleted")


def _note_name(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Before a group is saved: its name as stored, for the rename's audit after the save (_renamed)."""
    if instance.pk is None or (update_fields is not None and "name" not in update_fields):
        return
    instance.__dict__["_stored_name"] = sender.objects.filter(pk=instance.pk).values_list("name", flat=True).first()


def _renamed(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    previous = instance.__dict__.pop("_stored_name", None)
    if previous is not None and previous != instance.name:
        from mailbox.services import auth_changes

        auth_changes.group_renamed(group=instance, previous=previous)


def _permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """user.user_permissions or group.permissions changed from code (either side: permission.user_set …): read
    before (pre_*) and after (post_*); the reading waits on the instance in between, per through table."""
    if action not in ("pre_add", "pre_remove", "pre_clear", "post_add", "post_remove", "post_clear"):
        return
    from mailbox.services import auth_changes

    key = f"_permissions_changing_{sender._meta.db_table}"
    if action.startswith("post_"):
        auth_changes.permissions_changed(sender=sender, before=instance.__dict__.pop(key, None))
        return
    instance.__dict__[key] = auth_changes.permissions_changing(
        sender=sender, instance=instance, reverse=reverse, pk_set=pk_set
    )


def connect() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

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
    for deletable in (user_model, Group):
        pre_delete.connect(_deleting, sender=deletable, dispatch_uid=f"audit-{deletable.__name__}-deleting")
        post_delete.connect(_deleted, sender=deletable, dispatch_uid=f"audit-{deletable.__name__}-deleted")
    pre_save.connect(_note_name, sender=Group, dispatch_uid="audit-group-name-before")
    post_save.connect(_renamed, sender=Group, dispatch_uid="audit-group-renamed")
    for through in (user_model.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(_permissions_changed, sender=through, dispatch_uid=f"audit-{through.__name__}")
