"""Signing's notifications name their draft's mailbox (params["mailbox_id"]): they quote subject and patient and are
shown only while the reader is a member of that mailbox (mailbox.selectors). Older rows get it from their draft."""

from __future__ import annotations

from django.db import migrations

KINDS = ("signing_queued", "review_requested", "review_returned", "review_approved")


def add_mailbox_id(apps, schema_editor) -> None:
    Notification = apps.get_model("mailbox", "Notification")
    Draft = apps.get_model("signing", "Draft")
    rows = (
        Notification.objects.filter(kind__in=KINDS, params__has_key="draft")
        .exclude(params__has_key="mailbox_id")
        .order_by("pk")
    )
    last = 0
    while True:
        chunk = list(rows.filter(pk__gt=last)[:2000])
        if not chunk:
            return
        last = chunk[-1].pk
        # A draft id is a positive int (JSON may hold anything; bool is an int in Python).
        drafts = {n.pk: d for n in chunk if isinstance(d := n.params.get("draft"), int) and not isinstance(d, bool)}
        mailboxes = dict(Draft.objects.filter(pk__in=set(drafts.values())).values_list("pk", "mailbox_id"))
        changed = []
        for notification in chunk:
            mailbox_id = mailboxes.get(drafts.get(notification.pk))
            if mailbox_id is not None:
                notification.params = {**notification.params, "mailbox_id": mailbox_id}
                changed.append(notification)
        Notification.objects.bulk_update(changed, ["params"])


class Migration(migrations.Migration):
    dependencies = [
        ("signing", "0008_comfort_session"),
        ("mailbox", "0021_notification_review_kinds"),
    ]

    operations = [migrations.RunPython(add_mailbox_id, migrations.RunPython.noop)]
