from django.db import migrations

# Starting registry (gematik list, see research kim-protocol §9.3); managers extend it in the admin.
LABELS = [
    ("Arztbrief", "eArztbrief", "badge-arztbrief"),
    ("eAU", "eAU", "badge-eau"),
    ("KIM-Mail", "KIM-Mail", "badge-kimmail"),
    ("eEB", "eEB", "badge-neutral"),
    ("eRezept", "E-Rezept", "badge-neutral"),
    ("1ClickAbrechnung", "1-Click-Abrechnung", "badge-neutral"),
    ("DiMus", "DiMus", "badge-neutral"),
    ("EBZ", "EBZ", "badge-neutral"),
    ("eDMP", "eDMP", "badge-neutral"),
    ("eNachricht", "eNachricht", "badge-neutral"),
    ("ePVS", "ePVS", "badge-neutral"),
    ("KZVAbr", "KZV-Abrechnung", "badge-neutral"),
    ("LDT-Auftrag", "Laborauftrag", "badge-neutral"),
    ("LDT-Befund", "Laborbefund", "badge-neutral"),
    ("QSPB", "QSPB", "badge-neutral"),
    ("Selbsttest", "Selbsttest", "badge-neutral"),
]


def forwards(apps, schema_editor):
    Label = apps.get_model("mailbox", "DienstkennungLabel")
    for application, label, css in LABELS:
        Label.objects.update_or_create(application=application, defaults={"label": label, "css_class": css})


def backwards(apps, schema_editor):
    apps.get_model("mailbox", "DienstkennungLabel").objects.filter(application__in=[a for a, _, _ in LABELS]).delete()


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
