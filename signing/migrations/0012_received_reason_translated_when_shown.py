"""Why a received signature could not be checked (or is invalid) is kept as msgid and parameters (kimportal.texts),
translated when shown, as the queue's reasons are (0010); the Konnektor's own words are kept as they came.

The text columns become JSON columns. A row written before keeps its German sentence, as a JSON string, and is
shown as it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work
on PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from django.db import migrations

from kimportal.textcolumns import text_to_stored

FIELDS = [("receivedsignature", "reason")]


class Migration(migrations.Migration):
    dependencies = [("signing", "0011_comfort_texts_translated_when_shown")]

    operations = text_to_stored(
        "signing", FIELDS, options={"receivedsignature": {"verbose_name": "Grund"}}, back_max_length=500
    )
