"""The managers' forms for client systems (the KIS API's connections)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _

from mailbox.models import Mailbox
from signing.api.tokens import LIFETIMES_DAYS, lifetime_default


def _lifetime_field() -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label=_("Gültigkeit des Tokens"),
        choices=list(LIFETIMES_DAYS.items()),
        coerce=int,
        # Left out (a script's post, an older page): the configured default.
        required=False,
        empty_value=None,
        initial=lifetime_default,
        help_text=_("Danach weist die Schnittstelle das Token ab; rechtzeitig ein neues erzeugen."),
    )


class KisTokenForm(forms.Form):
    """A new token for a connection: how long it is valid."""

    token_days = _lifetime_field()


class KisClientForm(forms.Form):
    name = forms.CharField(label=_("Name der Anbindung"), max_length=100)
    mailboxes = forms.ModelMultipleChoiceField(
        queryset=Mailbox.objects.none(),
        label=_("Abteilungen (Absender-Postfächer)"),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    callback_url = forms.URLField(
        label=_("Rückruf-URL (leer: keine Rückrufe)"),
        required=False,
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        assume_scheme="https",
    )
    is_active = forms.BooleanField(label=_("aktiv"), required=False, initial=True)
    token_days = _lifetime_field()

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        queryset = Mailbox.objects.filter(is_active=True).order_by("display_name")
        self.fields["mailboxes"].queryset = queryset  # type: ignore[attr-defined]
        if editing:
            # The name is what the audit and the drafts' history show: it stays. Tokens are issued on their own.
            del self.fields["name"]
            del self.fields["token_days"]
        else:
            del self.fields["is_active"]

    def clean_name(self) -> str:
        return str(self.cleaned_data["name"]).strip()
