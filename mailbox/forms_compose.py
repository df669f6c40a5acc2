"""Forms of the send path: the draft (recipients, subject, text, Dienstkennung), attachments, send and decisions.

Recipients arrive as repeated hidden inputs from the directory picker's chips (``to``/``cc``) and as addresses
typed into a plain text field (``to_typed``/``cc_typed``, comma- or line-separated). Both are checked against the
KIM address rules here; the directory checks (certificate, Telematik-ID, version) are the pre-flight's.
"""

from __future__ import annotations

import re
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from mailbox.dienstkennung import registry
from mailbox.services.compose import (
    DEFAULT_DIENSTKENNUNG,
    MAX_BODY,
    MAX_RECIPIENTS,
    MAX_STORED_RECIPIENTS,
    MAX_SUBJECT,
    address_problem,
)

MAX_ADDRESS = 998
SPLIT = re.compile(r"[\s,;]+")


def kim_address_error(address: str) -> str:
    """Why the address is not a KIM address (German, for the user), or "" when it is one: the send path's rule."""
    return address_problem(address)


def dienstkennung_choices() -> list[tuple[str, str]]:
    """Every registered Dienstkennung with a version, from the registry's data file (it changes without code).

    Patterns (``PFL;ABR-*``) name no sendable value and are left out; KIM-Mail;Default comes first."""
    language = translation.get_language()
    choices: list[tuple[str, str]] = []
    seen: set[str] = set()
    reg = registry()
    entries = sorted(
        [*reg.exact.values(), *(e for _a, _p, e in reg.prefixes)],
        key=lambda e: (e.application != "KIM-Mail", e.application.casefold(), e.message_type.casefold()),
    )
    for entry in entries:
        if entry.message_type.endswith("*"):
            continue
        for version in entry.versions or ("V1.0",):
            value = f"{entry.application};{entry.message_type};{version}"
            if value not in seen:
                seen.add(value)
                choices.append((value, f"{entry.label_for(language)} – {value}"))
    if DEFAULT_DIENSTKENNUNG not in seen:
        choices.insert(0, (DEFAULT_DIENSTKENNUNG, f"KIM-Mail – {DEFAULT_DIENSTKENNUNG}"))
    return choices


def _attachment_ids(form: forms.Form) -> list[int] | None:
    """The attachment ids a page shows ("12 13"), or None when the page sent none (a page from before)."""
    if "shown_attachments" not in form.data:
        return None
    parts = [p for p in SPLIT.split(form.cleaned_data.get("shown_attachments") or "") if p]
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        raise ValidationError(_("Die Seite ist veraltet. Bitte neu laden."), code="invalid")
    return [int(p) for p in parts]


class RecipientsField(forms.Field):
    """A list of addresses (the picker's repeated inputs), lower-cased, without duplicates, in order."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        items = value if isinstance(value, (list, tuple)) else [value]
        # A dict keeps the order and finds a duplicate at once: a hand-made post of 100,000 addresses in one value
        # compared each with all before it (minutes of one server thread) before the recipient limit was checked.
        out: dict[str, None] = {}
        for item in items:
            for part in SPLIT.split(str(item)):
                address = part.strip().strip("<>").lower()
                if address:
                    out[address] = None
        return list(out)


class TextField(forms.CharField):
    """Text as typed, without NUL characters: invisible, without meaning in mail (RFC 5322 allows none) and refused
    by PostgreSQL. Pasted along with text (from a PDF, say), one made every autosave fail ("Nullzeichen sind nicht
    erlaubt") for a character the user could not find; it is dropped, as a mail client drops it."""

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value)).replace("\x00", "")


class DraftForm(forms.Form):
    """What an autosave or an explicit save stores. Nothing here is required: a draft may be half written."""

    mailbox = forms.TypedChoiceField(label=_("Absender (Postfach)"), coerce=int)
    to = RecipientsField(required=False)
    to_typed = forms.CharField(
        label=_("Weitere Adressen eingeben"),
        required=False,
        max_length=5000,
        help_text=_("KIM-Adressen, durch Komma getrennt"),
    )
    cc = RecipientsField(required=False)
    cc_typed = forms.CharField(label=_("Weitere Adressen in Kopie"), required=False, max_length=5000)
    subject = TextField(label=_("Betreff"), required=False, max_length=MAX_SUBJECT)
    body = TextField(
        label=_("Nachricht"),
        required=False,
        max_length=MAX_BODY,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 14}),
    )
    dienstkennung = forms.ChoiceField(label=_("Dienstkennung"), initial=DEFAULT_DIENSTKENNUNG)
    version = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=0)
    # The text fields the page was loaded with or last saved (OutgoingMessage.content_hash): the save's guard.
    content_hash = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    # The files the page shows ("12 13"): a send checks that these are the draft's. None: a page from before. No
    # length limit of its own (a draft may have a thousand files; refused, the page could save nothing): the
    # request's size limit bounds it.
    shown_attachments = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, mailboxes: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["mailbox"]).choices = [
            (m.pk, f"{m.display_name} <{m.address}>") for m in mailboxes
        ]
        choices = dienstkennung_choices()
        current = (self.initial or {}).get("dienstkennung") or (self.data.get("dienstkennung") if self.data else "")
        if current and current not in dict(choices):
            # A reply keeps what it answers (an unlisted version, say): shown, never silently replaced.
            choices.insert(0, (current, current))
        cast(forms.ChoiceField, self.fields["dienstkennung"]).choices = choices

    def clean_shown_attachments(self) -> list[int] | None:
        return _attachment_ids(self)

    def _addresses(self, listed: str, typed: str) -> list[str]:
        addresses = list(self.cleaned_data.get(listed) or [])
        for part in SPLIT.split(self.cleaned_data.get(typed) or ""):
            address = part.strip().strip("<>").lower()
            if address and address not in addresses:
                addresses.append(address)
        problems = [e for e in (kim_address_error(a) for a in addresses) if e]
        for problem in problems:
            self.add_error(typed, problem)
        return addresses

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # The addresses are checked even when the subject is refused: every problem is named at once.
        if any(name in self.errors for name in ("to", "to_typed", "cc", "cc_typed")):
            return data
        data["to"] = self._addresses("to", "to_typed")
        data["cc"] = [a for a in self._addresses("cc", "cc_typed") if a not in data["to"]]
        # More than a message may go to is saved (the text typed with them is not lost) and refused at send; only a
        # hand-made flood is refused here.
        if len(data["to"]) + len(data["cc"]) > MAX_STORED_RECIPIENTS:
            raise ValidationError(_("Höchstens %(n)d Empfänger je Nachricht.") % {"n": MAX_RECIPIENTS}, code="too_many")
        return data

    def outgoing_data(self) -> dict[str, Any]:
        """The fields the draft service takes (OutgoingData)."""
        d = self.cleaned_data
        return {
            "subject": d["subject"],
            "body": d["body"],
            "to": d["to"],
            "cc": d["cc"],
            "dienstkennung": d["dienstkennung"] or DEFAULT_DIENSTKENNUNG,
        }


class VersionForm(forms.Form):
    # The version the page showed (a colleague's change in between is a conflict); absent without a page.
    version = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=0)


class DraftCheckForm(forms.Form):
    """What the compose page knows of its draft, when it asks whether the draft changed elsewhere."""

    version = forms.IntegerField(required=False, min_value=0)
    content_hash = forms.CharField(required=False, max_length=64)
    shown_attachments = forms.CharField(required=False)  # as DraftForm's

    def clean_shown_attachments(self) -> list[int] | None:
        return _attachment_ids(self)


class RemoveRecipientForm(forms.Form):
    # Whatever the draft holds, as the pre-flight named it: an address the KIM pattern takes may still be no valid
    # e-mail address (two dots in a row), and removing it is the way out.
    address = forms.CharField(max_length=MAX_ADDRESS)
    # The page's draft version (without JavaScript there is none: the removal then applies to the stored draft).
    version = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=0)
    content_hash = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)


class UncertainForm(forms.Form):
    """A person's decision about a message whose delivery is unknown (the worker died after the end of DATA)."""

    delivered = forms.TypedChoiceField(
        choices=[("yes", _("Zugestellt")), ("no", _("Nicht zugestellt"))],
        coerce=lambda v: v == "yes",
    )
    version = forms.IntegerField(required=False, widget=forms.HiddenInput, min_value=0)
