"""Every KIS API token expires (`KisToken.expires_at`).

A token issued before has none. It gets a year from its creation, but never less than 90 days from this
upgrade: a KIS that runs on an old token keeps working while its administrators see the date on the
connection's page and the warning on the operations page, and issue a new token in time.
"""

from __future__ import annotations

import datetime as dt

from django.db import migrations, models
from django.utils import timezone

YEAR = dt.timedelta(days=365)
GRACE = dt.timedelta(days=90)


def expiry_for_existing(created_at: dt.datetime, now: dt.datetime) -> dt.datetime:
    return max(created_at + YEAR, now + GRACE)


def fill(apps, schema_editor) -> None:
    token_model = apps.get_model("signing", "KisToken")
    now = timezone.now()
    for token in token_model.objects.filter(expires_at__isnull=True).only("pk", "created_at").iterator():
        token_model.objects.filter(pk=token.pk).update(expires_at=expiry_for_existing(token.created_at, now))


class Migration(migrations.Migration):
    dependencies = [("signing", "0013_kis_callback_error_translated_when_shown")]

    operations = [
        migrations.AddField(
            model_name="kistoken",
            name="expires_at",
            field=models.DateTimeField(null=True, verbose_name="gültig bis"),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="kistoken",
            name="expires_at",
            field=models.DateTimeField(verbose_name="gültig bis"),
        ),
    ]
