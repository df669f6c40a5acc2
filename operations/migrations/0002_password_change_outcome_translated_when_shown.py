"""Why a password change was refused or is uncertain is kept as msgid and parameters (kimportal.texts), translated
when shown, as the other apps' reasons are (mailbox 0025, signing 0010): a worker settles the change, an owner
reads it later in their language.

The text column becomes a JSON column. A row written before keeps its German sentence, as a JSON string, and is
shown as it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work
on PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from django.db import migrations

from kimportal.textcolumns import text_to_stored

FIELDS = [("passwordchange", "outcome")]


class Migration(migrations.Migration):
    dependencies = [("operations", "0001_kimadmin")]

    operations = text_to_stored("operations", FIELDS)
