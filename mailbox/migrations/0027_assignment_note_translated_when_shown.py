"""A responsibility period's note (a routing rule's reason, or what a person typed) is kept as a stored text.

The text columns become JSON columns. A row written before keeps its German sentence, as a JSON string, and is
shown as it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work
on PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from django.db import migrations

from kimportal.textcolumns import text_to_stored

FIELDS = [("assignmentperiod", "note")]


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0026_fetch_texts_translated_when_shown")]

    operations = text_to_stored("mailbox", FIELDS)
