# Membership: when and by whom the role was granted (the managers' access report). Existing rows stay null
# ("before this was recorded"). Mailbox.members names its user foreign key, now that Membership has two.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0015_controlling_sla_retention"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="granted_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="erteilt am"),
        ),
        migrations.AddField(
            model_name="membership",
            name="granted_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="erteilt von",
            ),
        ),
        migrations.AlterField(
            model_name="mailbox",
            name="members",
            field=models.ManyToManyField(
                related_name="mailboxes",
                through="mailbox.Membership",
                through_fields=("mailbox", "user"),
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
