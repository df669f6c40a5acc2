from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from mailbox.clients.tls import normalize_fingerprint
from mailbox.models import KimAccount

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

    from mailbox.selectors import MessageFilter


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

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
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


class NoteForm(VersionedForm):
    body = forms.CharField(label=_("Notiz"), max_length=10_000, strip=True)


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
    view = forms.ChoiceField(choices=VIEWS, required=False)
    state = forms.ChoiceField(choices=[], required=False, label=_("Status"))
    dienstkennung = forms.CharField(required=False, max_length=200, label=_("Dienstkennung"))
    date_from = forms.DateField(required=False, label=_("von"))
    date_to = forms.DateField(required=False, label=_("bis"))
    q = forms.CharField(required=False, max_length=200, label=_("Suche"))
    sort = forms.ChoiceField(choices=SORTS, required=False, label=_("Sortierung"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from mailbox.models import Message

        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["state"]).choices = [("", _("alle Status")), *Message.State.choices]

    def to_filter(self) -> MessageFilter:
        from mailbox.selectors import MessageFilter

        if not self.is_valid():
            return MessageFilter()
        d = self.cleaned_data
        return MessageFilter(
            view=d.get("view") or "all",
            state=d.get("state") or "",
            dienstkennung=d.get("dienstkennung") or "",
            date_from=d.get("date_from"),
            date_to=d.get("date_to"),
            q=d.get("q") or "",
            sort=d.get("sort") or "-received",
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
