from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django import forms
from django.utils.translation import gettext_lazy as _

from mailbox.clients.tls import normalize_fingerprint
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import KimAccount

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

    from mailbox.selectors import MessageFilter


class SecretTextarea(forms.Textarea):
    """A text area that never shows what was typed into it, as PasswordInput(render_value=False): a form returned
    with an error does not put a pasted private key back into the page."""

    def format_value(self, value: Any) -> str | None:
        return None


class KimAccountAdminForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Passwort"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Wird verschlüsselt gespeichert. Leer lassen, um das bisherige Passwort zu behalten."),
    )
    confirm_plain = forms.BooleanField(
        label=_("Unverschlüsselte Verbindung bewusst gewählt"),
        required=False,
        help_text=_(
            "Ohne TLS gehen KIM-Passwort und Nachrichten mit Patientendaten im Klartext durchs Netz. "
            "Nur für Tests oder wenn das CM auf demselben Rechner läuft."
        ),
    )
    client_key = forms.CharField(
        label=_("Privater Schlüssel zum Client-Zertifikat (PEM)"),
        required=False,
        strip=False,
        widget=SecretTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text=_(
            "Wird verschlüsselt gespeichert und nie wieder angezeigt. Leer lassen, um den bisherigen zu behalten."
        ),
    )
    client_key_passphrase = forms.CharField(
        label=_("Passphrase des Schlüssels"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Nur für einen verschlüsselten Schlüssel; sie wird nicht gespeichert."),
    )
    remove_client_certificate = forms.BooleanField(label=_("Client-Zertifikat entfernen"), required=False)

    class Meta:
        model = KimAccount
        fields = [
            "mailbox",
            "is_active",
            "cm_host",
            "smtp_port",
            "pop3_port",
            "transport",
            "tls_certificate_check",
            "tls_fingerprint_sha256",
            "tls_ca_certificates",
            "tls_check_hostname",
            "tls_client_certificate",
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
        widgets = {
            "tls_ca_certificates": forms.Textarea(attrs={"rows": 4}),
            "tls_client_certificate": forms.Textarea(attrs={"rows": 4}),
        }

    def clean_tls_fingerprint_sha256(self) -> str:
        value = normalize_fingerprint(self.cleaned_data.get("tls_fingerprint_sha256", ""))
        if value and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise forms.ValidationError(_("Ein SHA-256-Fingerabdruck besteht aus 64 Hex-Zeichen."))
        return value

    def clean_tls_ca_certificates(self) -> str:
        value = self.cleaned_data.get("tls_ca_certificates", "").strip()
        if value:
            try:
                x509.load_pem_x509_certificates(value.encode("ascii"))
            except (ValueError, UnicodeEncodeError) as exc:
                raise forms.ValidationError(
                    _("Keine lesbaren CA-Zertifikate im PEM-Format (-----BEGIN CERTIFICATE-----).")
                ) from exc
        return value

    def clean_tls_client_certificate(self) -> str:
        value = self.cleaned_data.get("tls_client_certificate", "").strip()
        if not value:
            return ""
        try:
            cert = x509.load_pem_x509_certificate(value.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise forms.ValidationError(
                _("Kein lesbares Client-Zertifikat im PEM-Format (-----BEGIN CERTIFICATE-----).")
            ) from exc
        now = dt.datetime.now(dt.UTC)
        if cert.not_valid_after_utc < now:
            raise forms.ValidationError(
                _("Das Client-Zertifikat ist abgelaufen (gültig bis %(until)s).")
                % {"until": cert.not_valid_after_utc.strftime("%d.%m.%Y %H:%M UTC")}
            )
        if cert.not_valid_before_utc > now:
            raise forms.ValidationError(
                _("Das Client-Zertifikat ist erst ab %(since)s gültig.")
                % {"since": cert.not_valid_before_utc.strftime("%d.%m.%Y %H:%M UTC")}
            )
        self._client_cert = cert
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        transport = data.get("transport")
        if transport == KimAccount.Transport.PLAIN:
            was_plain = bool(self.instance.pk) and self.instance.transport == KimAccount.Transport.PLAIN
            if not data.get("confirm_plain") and not was_plain:
                self.add_error(
                    "confirm_plain",
                    _("Unverschlüsselt nur, wenn ausdrücklich bestätigt – sonst bitte TLS oder STARTTLS wählen."),
                )
        elif (
            data.get("tls_certificate_check") == KimAccount.CertificateCheck.PINNED
            and "tls_fingerprint_sha256" in data
            and not data["tls_fingerprint_sha256"]
        ):
            self.add_error("tls_fingerprint_sha256", _("Für gepinntes TLS ist der Fingerabdruck erforderlich."))
        self._clean_client_key(data)
        if not data.get("password") and not (self.instance and self.instance.password_encrypted):
            self.add_error("password", _("Bitte das Passwort des KIM-Kontos eingeben."))
        elif not data.get("password") and self._moved():
            # The stored password is sent only where it was entered for: a test or a save with another server
            # would hand it to whoever answers there.
            self.add_error(
                "password",
                _(
                    "Das Clientmodul (Adresse oder Port) oder die Absicherung der Verbindung ist geändert: bitte "
                    "das Passwort erneut eingeben. Das gespeicherte wird nur auf dem bisherigen Weg gesendet."
                ),
            )
        for field in ("smtp_username_template", "pop3_username_template"):
            template = data.get(field) or ""
            try:
                template.format(
                    address="", fachdienst="", mandant="", clientsystem="", workplace="", user="", konnektor=""
                )
            except (KeyError, IndexError, ValueError):
                self.add_error(field, _("Unbekannter Platzhalter in der Vorlage."))
        return data

    def _clean_client_key(self, data: dict[str, Any]) -> None:
        """The key must belong to the certificate; it is kept as unencrypted PKCS#8 (then encrypted at rest)."""
        self._client_key_pem: str | None = None  # None: keep what is stored
        if data.get("remove_client_certificate"):
            data["tls_client_certificate"] = ""
            self._client_key_pem = ""
            return
        cert = getattr(self, "_client_cert", None)
        raw_key = (data.get("client_key") or "").strip()
        if not data.get("tls_client_certificate"):
            if raw_key:
                self.add_error("client_key", _("Zum Schlüssel fehlt das Client-Zertifikat."))
            elif "tls_client_certificate" in data:
                self._client_key_pem = ""  # no certificate, no key
            return
        if cert is None:
            return  # the certificate itself has an error already
        if raw_key:
            passphrase = data.get("client_key_passphrase") or None
            try:
                key = serialization.load_pem_private_key(
                    raw_key.encode("ascii"), password=passphrase.encode() if passphrase else None
                )
            except TypeError:
                # cryptography: TypeError when a passphrase is missing for an encrypted key, or given for a plain one.
                message = (
                    _("Der Schlüssel ist nicht verschlüsselt – bitte keine Passphrase angeben.")
                    if passphrase
                    else _("Der Schlüssel ist verschlüsselt – bitte die Passphrase angeben.")
                )
                self.add_error("client_key_passphrase", message)
                return
            except (ValueError, UnicodeEncodeError):
                self.add_error(
                    "client_key",
                    _("Kein lesbarer privater Schlüssel im PEM-Format, oder die Passphrase ist falsch."),
                )
                return
            key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode("ascii")
        elif self.instance.pk and self.instance.tls_client_key_encrypted:
            try:
                key_pem = self.instance.get_client_key()
            except CredentialDecryptionError:
                self.add_error("client_key", _("Der gespeicherte Schlüssel ist nicht lesbar – bitte neu angeben."))
                return
            key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
        else:
            self.add_error("client_key", _("Bitte den privaten Schlüssel zum Client-Zertifikat angeben."))
            return
        public = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
            self.add_error("client_key", _("Der Schlüssel gehört nicht zu diesem Client-Zertifikat."))
            return
        self._client_key_pem = key_pem if raw_key else None

    def _moved(self) -> bool:
        """Whether the form names another server than the one the stored password was entered for."""
        if not (self.instance.pk and self.instance.password_encrypted):
            return False
        # clean() runs before the form's values are copied onto the instance: it still holds the saved ones. Another
        # way to the same server counts too: without TLS, or with a weaker or other certificate check, whoever sits in
        # between would read the password.
        data, saved = self.cleaned_data, self.instance
        where = ("cm_host", "smtp_port", "pop3_port", "transport", "tls_certificate_check", "tls_check_hostname")
        if any(field in self.fields and data.get(field) != getattr(saved, field) for field in where):
            return True
        if "tls_fingerprint_sha256" in self.fields and normalize_fingerprint(
            data.get("tls_fingerprint_sha256") or ""
        ) != normalize_fingerprint(saved.tls_fingerprint_sha256 or ""):
            return True
        return (
            "tls_ca_certificates" in self.fields
            and (data.get("tls_ca_certificates") or "").strip() != (saved.tls_ca_certificates or "").strip()
        )

    def save(self, commit: bool = True) -> KimAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("password"):
            account.set_password(self.cleaned_data["password"])
        if self._client_key_pem is not None:
            account.set_client_key(self._client_key_pem)
        if commit:
            account.save()
        return account


class VersionedForm(forms.Form):
    """Every action carries the version the user saw: the conflict guard compares it."""

    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)


class AssignForm(VersionedForm):
    assignee = forms.IntegerField(label=_("Zuweisen an"))
    note = forms.CharField(label=_("Hinweis"), required=False, max_length=500)


class StateForm(VersionedForm):
    state = forms.ChoiceField(choices=[])
    due_at = forms.DateTimeField(
        label=_("Fällig am"), required=False, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M"]
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from mailbox.models import Message

        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["state"]).choices = Message.State.choices

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("state") == "waiting" and not data.get("due_at"):
            self.add_error("due_at", _("Für „wartet“ bitte ein Fälligkeitsdatum angeben."))
        return data


class NoteForm(forms.Form):
    # No version: a note adds to the message and overwrites nothing (mailbox.services.notes.note_add).
    body = forms.CharField(label=_("Notiz"), max_length=10_000, strip=True)


class AttachmentFilterForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, strip=True, label=_("Name enthält"))


class MessageFilterForm(forms.Form):
    VIEWS = [
        ("all", _("Alle")),
        ("open", _("Offen")),
        ("unassigned", _("Nicht zugewiesen")),
        ("mine", _("Mir zugewiesen")),
    ]
    SORTS = [
        ("-received", _("Neueste zuerst")),
        ("received", _("Älteste zuerst")),
        ("from", _("Absender")),
        ("subject", _("Betreff")),
    ]
    view = forms.ChoiceField(choices=VIEWS, required=False, label=_("Ansicht"))
    state = forms.ChoiceField(choices=[], required=False, label=_("Status"))
    dienstkennung = forms.CharField(required=False, max_length=200, label=_("Dienstkennung"))
    date_from = forms.DateField(required=False, label=_("von"))
    date_to = forms.DateField(required=False, label=_("bis"))
    q = forms.CharField(required=False, max_length=200, label=_("Suche"))
    sort = forms.ChoiceField(choices=SORTS, required=False, label=_("Sortierung"))
    queue = forms.IntegerField(required=False, min_value=1, label=_("Ablage"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from mailbox.models import Message

        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["state"]).choices = [("", _("alle Status")), *Message.State.choices]

    def clean_q(self) -> str:
        from mailbox.selectors.messages import search_excludes_only

        q: str = self.cleaned_data.get("q") or ""
        if search_excludes_only(q):
            raise forms.ValidationError(
                _(
                    "Bitte mindestens ein Wort angeben, das vorkommen soll: Wörter mit „-“ davor schließen nur aus, "
                    "Füllwörter wie „die“ oder „und“ werden nicht gesucht (z. B. „Befund -Labor“)."
                )
            )
        return q

    def error_texts(self, *, ignore: tuple[str, ...] = ()) -> list[str]:
        """What was refused, field by field, in the words the user reads ("Suche: …")."""
        return [
            f"{self[name].label}: {error}"
            for name, errors in self.errors.items()
            if name not in ignore
            for error in errors
        ]

    def to_filter(self) -> MessageFilter:
        from mailbox.selectors import MessageFilter

        # Only the fields that passed (cleaned_data leaves out the others): the view reports the rest.
        self.is_valid()
        d = self.cleaned_data
        return MessageFilter(
            view=d.get("view") or "all",
            state=d.get("state") or "",
            dienstkennung=d.get("dienstkennung") or "",
            date_from=d.get("date_from"),
            date_to=d.get("date_to"),
            q=d.get("q") or "",
            sort=d.get("sort") or "-received",
            queue=d.get("queue") or None,
        )


class AbsenceForm(forms.Form):
    substitute: forms.ModelChoiceField[User] = forms.ModelChoiceField(queryset=None, label=_("Vertretung"))
    starts_at = forms.DateTimeField(label=_("Beginn"), input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])
    ends_at = forms.DateTimeField(label=_("Ende"), input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])

    def __init__(self, *args: Any, substitutes: QuerySet[User] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from django.contrib.auth import get_user_model

        cast("forms.ModelChoiceField[User]", self.fields["substitute"]).queryset = (
            substitutes if substitutes is not None else get_user_model().objects.none()
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", _("Das Ende muss nach dem Beginn liegen."))
        return data


class MembershipForm(forms.Form):
    user = forms.CharField(label=_("Benutzername"), required=False, max_length=150)
    group = forms.CharField(label=_("oder Gruppe (Station)"), required=False, max_length=150)
    role = forms.ChoiceField(label=_("Rolle"), choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from mailbox.models import Membership

        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["role"]).choices = Membership.Role.choices

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if bool(data.get("user")) == bool(data.get("group")):
            raise forms.ValidationError(_("Bitte genau einen Benutzer oder eine Gruppe angeben."))
        return data
