"""Forms of the KIM administration pages: what owners and managers enter before the Account Manager is asked.

Every check the provider would make and that can be made here is made here first, with a German message next to
the field (length, control characters, dates, the provider's password policy), so that the Account Manager sees
only requests it can accept.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.validators import control_characters, validate_display_name
from mailbox.forms_compose import kim_address_error
from mailbox.manage_forms import DATETIME_FORMATS, UserMultipleChoiceField
from mailbox.models import KimAccount, Mailbox
from mailbox.selectors.access import staff_for_manager
from operations.clients.accountmanager import AccountManagerError, policy_matches

OUT_OF_OFFICE_MAX = 2048  # AccountManager.yaml, OutOfOfficeNotification.message maxLength
PASSWORD_MAX = 256  # CommonSchemas.yaml, Password maxLength
DATA_TTL_MIN, DATA_TTL_MAX = 10, 365  # AccountManager.yaml, Account.dataTimeToLive
KIM_VERSION_PLUS = "1.5+"
KIM_VERSION_STANDARD = "1.5"


class OutOfOfficeForm(forms.Form):
    """The mailbox's automatic reply (Abwesenheitsnotiz), sent by the provider's Fachdienst."""

    active = forms.BooleanField(
        label=_("Abwesenheitsnotiz aktiv"),
        required=False,
        help_text=_("Im Zeitraum beantwortet der KIM-Dienst jede eingehende Nachricht einmal mit diesem Text."),
    )
    starts_at = forms.DateTimeField(
        label=_("Beginn"),
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    ends_at = forms.DateTimeField(
        label=_("Ende"),
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    text = forms.CharField(
        label=_("Text der Abwesenheitsnotiz"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6, "maxlength": OUT_OF_OFFICE_MAX}),
        help_text=_(
            "Höchstens 2.048 Zeichen. Die Antwort geht unverschlüsselt und ohne Signatur hinaus: "
            "keine Patientendaten hineinschreiben."
        ),
    )
    # The note as the form was filled from it (kimadmin.out_of_office_fingerprint): a colleague's change meanwhile is
    # noticed instead of overwritten.
    seen = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def _representable(self, name: str) -> dt.datetime | None:
        # The Account Manager gets the time in UTC: a date at the calendar's very edge (year 1 in Berlin) has none.
        value = cast("dt.datetime | None", self.cleaned_data.get(name))
        if value is not None:
            try:
                value.astimezone(dt.UTC)
            except OverflowError as exc:
                raise forms.ValidationError(_("Dieses Datum liegt außerhalb des möglichen Bereichs.")) from exc
        return value

    def clean_starts_at(self) -> dt.datetime | None:
        return self._representable("starts_at")

    def clean_ends_at(self) -> dt.datetime | None:
        return self._representable("ends_at")

    def clean_text(self) -> str:
        # Browsers send line breaks as CRLF; the limit counts characters as the user sees them.
        text = cast(str, self.cleaned_data.get("text") or "").replace("\r\n", "\n").replace("\r", "\n")
        if len(text) > OUT_OF_OFFICE_MAX:
            raise forms.ValidationError(
                _("Der Text ist zu lang: %(length)d Zeichen, erlaubt sind höchstens %(max)d.")
                % {"length": len(text), "max": OUT_OF_OFFICE_MAX}
            )
        bad = control_characters(text)
        if bad:
            raise forms.ValidationError(
                _("Der Text enthält unzulässige Steuerzeichen (%(chars)s). Bitte nur normalen Text verwenden.")
                % {"chars": ", ".join(bad)}
            )
        return text.strip()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", _("Das Ende muss nach dem Beginn liegen."))
        if data.get("active"):
            # AccountManager.yaml: with active=true the Account Manager needs every field.
            for name, message in (
                ("starts_at", _("Bitte den Beginn angeben.")),
                ("ends_at", _("Bitte das Ende angeben.")),
                ("text", _("Bitte einen Text für die Abwesenheitsnotiz eingeben.")),
            ):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, message)
            if ends and ends <= timezone.now() and "ends_at" not in self.errors:
                self.add_error("ends_at", _("Das Ende liegt in der Vergangenheit; so würde nie geantwortet."))
        return data


def _policy_matches(pattern: str, password: str) -> bool | None:
    """Whether the provider's policy (a Java-style regular expression) accepts the password; None when Python
    cannot read the expression (then the Account Manager decides alone). Evaluated with a time limit
    (accountmanager.policy_matches): a catastrophic pattern from the server is a form error, not a hung worker."""
    try:
        return policy_matches(pattern, password, anywhere=True)
    except AccountManagerError as exc:
        raise forms.ValidationError(exc.text) from exc


class PasswordForm(forms.Form):
    """A new password for the KIM account, checked against the provider's policy (ServiceInformation)."""

    password = forms.CharField(
        label=_("Neues Passwort"),
        strip=False,
        max_length=PASSWORD_MAX,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_repeat = forms.CharField(
        label=_("Neues Passwort wiederholen"),
        strip=False,
        max_length=PASSWORD_MAX,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, policy_regex: str = "", policy_text: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy_regex = policy_regex
        self.policy_text = policy_text
        if policy_text:
            self.fields["password"].help_text = _("Regeln des KIM-Anbieters: %(rules)s") % {"rules": policy_text}

    def clean_password(self) -> str:
        password = cast(str, self.cleaned_data["password"])
        if control_characters(password):
            raise forms.ValidationError(_("Das Passwort darf keine Steuerzeichen enthalten."))
        if self.policy_regex and _policy_matches(self.policy_regex, password) is False:
            raise forms.ValidationError(
                _("Das Passwort erfüllt die Regeln des KIM-Anbieters nicht: %(rules)s")
                % {"rules": self.policy_text or self.policy_regex}
            )
        return password

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("password_repeat") is not None:
            if data["password"] != data["password_repeat"]:
                self.add_error("password_repeat", _("Die beiden Eingaben stimmen nicht überein."))
        return data


class DataTimeToLiveForm(forms.Form):
    data_time_to_live = forms.IntegerField(
        label=_("Speicherdauer beim Anbieter (Tage)"),
        min_value=DATA_TTL_MIN,
        max_value=DATA_TTL_MAX,
        help_text=_("Wie lange der KIM-Dienst Nachrichten und Anhänge (KAS) vorhält: 10 bis 365 Tage."),
        error_messages={
            "min_value": _("Mindestens %(limit_value)s Tage."),
            "max_value": _("Höchstens %(limit_value)s Tage."),
            "invalid": _("Bitte eine ganze Zahl von Tagen eingeben."),
            "required": _("Bitte eine Zahl von Tagen eingeben."),
        },
    )


class KimVersionForm(forms.Form):
    """The "1.5+" opt-in (large messages through the KAS): only with the spec's warning read."""

    confirm = forms.BooleanField(
        label=_("Ich habe den Hinweis gelesen und möchte große Nachrichten empfangen (KIM-Version 1.5+)."),
        error_messages={"required": _("Bitte bestätigen Sie, dass Sie den Hinweis gelesen haben.")},
    )


class ConfirmForm(forms.Form):
    """A dangerous step (deregistration) needs an explicit tick, not just a button."""

    confirm = forms.BooleanField(
        label=_("Ja, ich bin sicher."),
        error_messages={"required": _("Bitte bestätigen Sie den Schritt ausdrücklich.")},
    )


# --- the registration wizard --------------------------------------------------------------------------------------


if TYPE_CHECKING:
    _ModelChoiceField = forms.ModelChoiceField[KimAccount]
else:  # Django's form fields are not subscriptable at run time
    _ModelChoiceField = forms.ModelChoiceField


class AccountChoiceField(_ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        account = cast(KimAccount, obj)
        return f"{account.mailbox.display_name} <{account.mailbox.address}> · {account.cm_host}"


class RegistrationAddressForm(forms.Form):
    """Step 1: the new address as users will see it, its first owners, the provider's registration code."""

    address = forms.EmailField(label=_("Neue KIM-Adresse"), max_length=254)
    display_name = forms.CharField(label=_("Anzeigename"), max_length=200)
    kind = forms.ChoiceField(label=_("Art"), choices=Mailbox.Kind.choices, initial=Mailbox.Kind.FUNCTIONAL)
    owners = UserMultipleChoiceField(
        label=_("Eigentümer"),
        queryset=None,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text=_("Mindestens eine Person; Eigentümer verwalten später Mitglieder und das KIM-Konto."),
    )
    template_account = AccountChoiceField(
        label=_("Verbindungseinstellungen übernehmen von"),
        queryset=None,
        help_text=_(
            "Clientmodul, Konnektor-Kontext und TLS-Einstellungen kommen von diesem KIM-Konto des Hauses; "
            "sie lassen sich danach unter „KIM-Konto bearbeiten“ ändern."
        ),
    )
    reference_id = forms.CharField(
        label=_("Registrierungscode (referenceID)"),
        max_length=256,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text=_("Vom KIM-Anbieter mitgeteilt, z. B. Vertragsnummer oder Registrierungscode."),
    )
    initial_password = forms.CharField(
        label=_("Initialpasswort des Anbieters"),
        max_length=PASSWORD_MAX,
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )

    def __init__(
        self, *args: Any, reference_required: bool = True, initial_password_required: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast("forms.ModelMultipleChoiceField[Any]", self.fields["owners"]).queryset = staff_for_manager()
        # The same accounts as operations.services.kimadmin.registration_templates (forms do not import services).
        accounts = KimAccount.objects.select_related("mailbox").order_by("mailbox__display_name")
        cast("forms.ModelChoiceField[KimAccount]", self.fields["template_account"]).queryset = accounts
        self.fields["reference_id"].required = reference_required
        self.fields["initial_password"].required = initial_password_required

    def clean_address(self) -> str:
        address = cast(str, self.cleaned_data["address"]).strip().lower()
        # An e-mail address is not yet a KIM address (an umlaut in the domain passes EmailField): the send path's rule.
        if problem := kim_address_error(address):
            raise forms.ValidationError(problem)
        if Mailbox.objects.filter(address__iexact=address).exists():
            raise forms.ValidationError(_("Ein Postfach mit dieser Adresse gibt es im Portal schon."))
        return address

    def clean_display_name(self) -> str:
        # The new mailbox's name in every list and in its mail's From: a bidirectional override would show another
        # name than it holds, a control character would land in a header.
        value = cast(str, self.cleaned_data["display_name"])
        validate_display_name(value)
        return value

    def clean_reference_id(self) -> str:
        value = cast(str, self.cleaned_data.get("reference_id") or "").strip()
        if control_characters(value):
            raise forms.ValidationError(_("Der Registrierungscode darf keine Steuerzeichen enthalten."))
        return value


class RegistrationVersionForm(forms.Form):
    """Step 3: KIM 1.5 or the "1.5+" opt-in, the latter only with the spec's warning acknowledged."""

    kim_version = forms.ChoiceField(
        label=_("KIM-Version des Postfachs"),
        widget=forms.RadioSelect,
        choices=[
            (KIM_VERSION_STANDARD, _("KIM 1.5 (Standard)")),
            (KIM_VERSION_PLUS, _("KIM 1.5+ – auch große Nachrichten (über 15 MiB) empfangen")),
        ],
        initial=KIM_VERSION_STANDARD,
    )
    confirm_plus = forms.BooleanField(
        label=_("Ich habe den Hinweis zu KIM 1.5+ gelesen."),
        required=False,
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kim_version") == KIM_VERSION_PLUS and not data.get("confirm_plus"):
            self.add_error("confirm_plus", _("Für KIM 1.5+ bitte bestätigen, dass Sie den Hinweis gelesen haben."))
        return data
