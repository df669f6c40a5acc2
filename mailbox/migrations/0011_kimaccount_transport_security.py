"""KIM accounts: the single TLS choice becomes transport (implicit TLS | STARTTLS | plain) plus the
certificate check (pinned | CA) and an optional client certificate.

Existing accounts keep working as before: none → plain, system_ca → implicit TLS checked against the
system CAs (with the host-name check the old mode had), pinned → implicit TLS with the pin.
"""

from __future__ import annotations

from django.db import migrations, models

FORWARD = {
    "none": ("plain", "pinned", False),
    "system_ca": ("implicit_tls", "ca", True),
    "pinned": ("implicit_tls", "pinned", False),
}


def split_tls_mode(apps, schema_editor) -> None:
    KimAccount = apps.get_model("mailbox", "KimAccount")
    for old, (transport, check, hostname) in FORWARD.items():
        KimAccount.objects.filter(tls_mode=old).update(
            transport=transport, tls_certificate_check=check, tls_check_hostname=hostname
        )


def join_tls_mode(apps, schema_editor) -> None:
    # STARTTLS, CA files and client certificates have no old equivalent; the nearest old mode is kept.
    KimAccount = apps.get_model("mailbox", "KimAccount")
    KimAccount.objects.filter(transport="plain").update(tls_mode="none")
    KimAccount.objects.exclude(transport="plain").filter(tls_certificate_check="ca").update(tls_mode="system_ca")
    KimAccount.objects.exclude(transport="plain").filter(tls_certificate_check="pinned").update(tls_mode="pinned")


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0010_notification_work_returned")]

    operations = [
        migrations.AddField(
            model_name="kimaccount",
            name="transport",
            field=models.CharField(
                choices=[
                    ("implicit_tls", "TLS ab Verbindungsaufbau (SMTPS/POP3S)"),
                    ("starttls", "STARTTLS (SMTP) / STLS (POP3)"),
                    ("plain", "UNSICHER: unverschlüsselt – Passwort und Nachrichten im Klartext"),
                ],
                default="implicit_tls",
                max_length=20,
                verbose_name="Transportsicherung",
            ),
        ),
        migrations.AddField(
            model_name="kimaccount",
            name="tls_certificate_check",
            field=models.CharField(
                choices=[
                    ("pinned", "SHA-256-Fingerabdruck des CM-Zertifikats (Pinning)"),
                    ("ca", "Zertifizierungsstelle (hinterlegte CA-Zertifikate oder System-CAs)"),
                ],
                default="pinned",
                max_length=20,
                verbose_name="Prüfung des CM-Zertifikats",
            ),
        ),
        migrations.AddField(
            model_name="kimaccount",
            name="tls_ca_certificates",
            field=models.TextField(
                blank=True,
                help_text="Nur bei Prüfung über eine Zertifizierungsstelle; leer = System-CAs des Servers",
                verbose_name="CA-Zertifikate (PEM)",
            ),
        ),
        migrations.AddField(
            model_name="kimaccount",
            name="tls_check_hostname",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Nur bei Prüfung über eine Zertifizierungsstelle. "
                    "Das Zertifikat eines CM ist selten auf seinen Hostnamen ausgestellt."
                ),
                verbose_name="Hostnamen im Zertifikat prüfen",
            ),
        ),
        migrations.AddField(
            model_name="kimaccount",
            name="tls_client_certificate",
            field=models.TextField(blank=True, verbose_name="Client-Zertifikat (PEM)"),
        ),
        migrations.AddField(
            model_name="kimaccount",
            name="tls_client_key_encrypted",
            field=models.TextField(blank=True, editable=False, verbose_name="Privater Schlüssel (verschlüsselt)"),
        ),
        migrations.RunPython(split_tls_mode, join_tls_mode),
        migrations.RemoveField(model_name="kimaccount", name="tls_mode"),
    ]
