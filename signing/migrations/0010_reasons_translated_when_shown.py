"""Reasons of the signing queue and its batches are kept as msgid and parameters (kimportal.texts), translated when
shown, as the outbox's are (mailbox 0025).

The text columns become JSON columns. A row written before keeps its German sentence, as a JSON string, and is
shown as it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work
on PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from django.db import migrations

from kimportal.textcolumns import text_to_stored

FIELDS = [("draft", "last_error"), ("signaturebatch", "error_text"), ("batchitem", "text")]


class Migration(migrations.Migration):
    dependencies = [("signing", "0009_notification_mailbox_id")]

    operations = text_to_stored("signing", FIELDS, back_max_length=500)
