"""Why a callback to a client system failed is kept as msgid and parameters (kimportal.texts), translated when
shown on the connection's page, as the queue's reasons are (0010). The endpoint's and the system's own words (a
refused connection) are kept as they came, as a parameter.

The text column becomes a JSON column. A row written before keeps its sentence, as a JSON string, and is shown as
it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work on
PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from django.db import migrations

from kimportal.textcolumns import text_to_stored

FIELDS = [("kiscallback", "last_error")]


class Migration(migrations.Migration):
    dependencies = [("signing", "0012_received_reason_translated_when_shown")]

    operations = text_to_stored("signing", FIELDS, back_max_length=500)
