from __future__ import annotations

import re

from django import forms
from django.utils.translation import gettext_lazy as _

from mailbox.clients.tls import normalize_fingerprint
from mailbox.models import KimAccount


class KimAccountAdminForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Passwort"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Wird verschlüsselt gespeichert. Leer lassen, um das bisherige Passwort zu behalten."),
    )

    class Meta:
        model = KimAccount
        fields = [
            "mailbox",
            "is_active",
            "cm_host",
            "smtp_port",
            "pop3_port",
            "tls_mode",
            "tls_fingerprint_sha256",
            "timeout_seconds",
            "fachdienst",
            "fachdienst_pop3",
            "mandant_id",
            "client_system_id",
            "workplace_id",
            "user_id",
            "konnektor_id",
            "smtp_username_template",
            "pop3_username_template",
            "poll_interval_seconds",
            "keep_on_server_days",
        ]

    def clean_tls_fingerprint_sha256(self) -> str:
        value = normalize_fingerprint(self.cleaned_data.get("tls_fingerprint_sha256", ""))
        if value and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise forms.ValidationError(_("Ein SHA-256-Fingerabdruck besteht aus 64 Hex-Zeichen."))
        return value

    def clean(self) -> dict:
        data = super().clean()
        if data.get("tls_mode") == KimAccount.TlsMode.PINNED and not data.get("tls_fingerprint_sha256"):
            self.add_error("tls_fingerprint_sha256", _("Für gepinntes TLS ist der Fingerabdruck erforderlich."))
        if not data.get("password") and not (self.instance and self.instance.password_encrypted):
            self.add_error("password", _("Bitte das Passwort des KIM-Kontos eingeben."))
        for field in ("smtp_username_template", "pop3_username_template"):
            template = data.get(field) or ""
            try:
                template.format(
                    address="", fachdienst="", mandant="", clientsystem="", workplace="", user="", konnektor=""
                )
            except (KeyError, IndexError, ValueError):
                self.add_error(field, _("Unbekannter Platzhalter in der Vorlage."))
        return data

    def save(self, commit: bool = True) -> KimAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("password"):
            account.set_password(self.cleaned_data["password"])
        if commit:
            account.save()
        return account
