"""Joins two migrations written side by side: KIM account transport security and fetch failures."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0011_kimaccount_transport_security"),
        ("mailbox", "0012_fetch_failure"),
    ]

    operations: list[migrations.operations.base.Operation] = []
