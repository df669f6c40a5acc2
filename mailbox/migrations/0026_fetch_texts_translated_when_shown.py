"""Why a fetch failed (the account's status, a message that cannot be fetched) is kept as msgid and parameters.

The text columns become JSON columns. A row written before keeps its German sentence, as a JSON string, and is
shown as it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work
on PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from django.db import migrations

from kimportal.textcolumns import text_to_stored

FIELDS = [("kimaccount", "status_message"), ("fetchfailure", "last_error")]


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0025_outbox_texts_translated_when_shown")]

    # The account's status is the fetch's to write, never a form's.
    operations = text_to_stored("mailbox", FIELDS, options={"kimaccount": {"editable": False}})
