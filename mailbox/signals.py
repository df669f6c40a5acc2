"""Receivers that keep per-request values true after a write in the same request (kimportal.requestscope)."""

from __future__ import annotations

from typing import Any

from kimportal.requestscope import scope_clear


def access_changed(sender: Any, **kwargs: Any) -> None:
    """A membership, user, group membership or mailbox changed: roles read earlier in this request are stale."""
    scope_clear()


def connect() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from mailbox.models import Mailbox, Membership

    user_model = get_user_model()
    for model in (Membership, Mailbox, user_model):
        post_save.connect(access_changed, sender=model, dispatch_uid=f"scope-{model.__name__}-save")
        post_delete.connect(access_changed, sender=model, dispatch_uid=f"scope-{model.__name__}-delete")
    m2m_changed.connect(access_changed, sender=user_model.groups.through, dispatch_uid="scope-user-groups")
