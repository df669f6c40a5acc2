"""Forms of the signing pages: they parse and check input; services do the work."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from signing.doctypes import document_type_choices
from signing.models import Draft
from signing.permissions import SIGNER_NOT_ALLOWED, may_sign_for
from signing.selectors import DraftFilter
from signing.services.batch import Selected
from signing.services.documents import BIDI_CONTROLS, CheckedDocument, DocumentRejected, document_check, too_big

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class UserChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.get_full_name() or obj.get_username())


# KIM addresses live below these domains (production, and the test environment the simulator uses); the
# Clientmodul refuses anything else only after the letter has been signed.
KIM_DOMAINS = (".kim.telematik", ".kim.telematik-test")


class DraftForm(forms.Form):
    """A draft's document and letter. On edit the document is optional (keeps the current one)."""

    document = forms.FileField(label=_("Dokument (PDF, Text oder XML)"), required=True)
    document_type = forms.ChoiceField(label=_("Dokumenttyp"), choices=[])
    patient_reference = forms.CharField(label=_("Patient (Name oder Fallnummer)"), max_length=100)
    # The choice list offers who may sign for the user's sending mailboxes; clean() checks the one chosen against
    # the mailbox chosen (a forged id of anyone else is refused here and again by the service).
    signer = UserChoiceField(
        queryset=None,
        label=_("Unterzeichner"),
        error_messages={
            "invalid_choice": _(
                "Diese Person kann nicht als Unterzeichner gewählt werden: Unterzeichnen kann nur, wer einen eHBA hat "
                "und im Absender-Postfach Mitglied mit der Rolle „Bearbeiten“ oder „Eigentümer“ ist."
            )
        },
    )
    mailbox = forms.ModelChoiceField(queryset=None, label=_("Absender-Postfach"))  # type: ignore[var-annotated]
    recipients = forms.CharField(
        label=_("Empfänger (KIM-Adressen, eine je Zeile)"), widget=forms.Textarea(attrs={"rows": 3})
    )
    subject = forms.CharField(label=_("Betreff"), max_length=200)
    body = forms.CharField(label=_("Nachrichtentext"), required=False, widget=forms.Textarea(attrs={"rows": 5}))
    # Creating: who reviews before the signature (optional; see signing.services.review).
    reviewer = UserChoiceField(
        queryset=None,
        required=False,
        label=_("Prüfung vor der Signatur durch (optional)"),
        help_text=_(
            "Lässt Ihre Abteilung diesen Dokumenttyp prüfen, prüft ohne Auswahl die Unterzeichnerin oder der "
            "Unterzeichner (mit Prüfrecht)."
        ),
    )
    # Editing: a note for the version history and the reviewer (what changed and why).
    comment = forms.CharField(
        label=_("Änderungsvermerk (optional)"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        signers: Any,
        mailboxes: Any,
        editing: Draft | None = None,
        reviewers: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if editing is None and reviewers is not None:
            cast(forms.ModelChoiceField, self.fields["reviewer"]).queryset = reviewers  # type: ignore[type-arg]
        else:
            del self.fields["reviewer"]
        if editing is None:
            del self.fields["comment"]
        cast(forms.ChoiceField, self.fields["document_type"]).choices = document_type_choices()
        cast(forms.ModelChoiceField, self.fields["signer"]).queryset = signers  # type: ignore[type-arg]
        cast(forms.ModelChoiceField, self.fields["mailbox"]).queryset = mailboxes  # type: ignore[type-arg]
        self.editing = editing
        self.checked_document: CheckedDocument | None = None
        if editing is not None:
            self.fields["document"].required = False
            self.fields["document"].label = _("Neues Dokument (leer lassen: bisheriges behalten)")

    def clean_document(self) -> Any:
        upload = self.cleaned_data.get("document")
        if not upload:
            return None
        # Refused by its declared size before it is read: an upload of gigabytes never becomes worker memory.
        refusal = too_big(upload.size or 0)
        if refusal is not None:
            raise ValidationError(refusal.message)
        try:
            self.checked_document = document_check(upload.read(), upload.name or "")
        except DocumentRejected as exc:
            raise ValidationError(exc.message) from exc
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        signer, mailbox = data.get("signer"), data.get("mailbox")
        if signer is not None and mailbox is not None and not may_sign_for(signer, mailbox.pk):
            name = signer.get_full_name() or signer.get_username()
            self.add_error("signer", SIGNER_NOT_ALLOWED % {"name": name, "mailbox": mailbox.display_name})
        return data

    def _one_line(self, name: str) -> str:
        # The subject becomes a mail header when the letter is sent: a line break there is header injection.
        value = str(self.cleaned_data.get(name) or "")
        # Control characters and line/paragraph separators; a no-break space pasted from a letter is fine. Direction
        # overrides neither: the queue would show the physician another patient or subject than the one stored.
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in BIDI_CONTROLS for ch in value):
            raise ValidationError(_("Bitte ohne Zeilenumbrüche oder Steuerzeichen."))
        return value

    def clean_subject(self) -> str:
        return self._one_line("subject")

    def clean_patient_reference(self) -> str:
        return self._one_line("patient_reference")

    def clean_recipients(self) -> list[str]:
        raw = self.cleaned_data.get("recipients") or ""
        addresses = [a.strip() for a in re.split(r"[\s,;]+", raw) if a.strip()]
        if not addresses:
            raise ValidationError(_("Bitte mindestens eine KIM-Adresse angeben."))
        wrong = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                wrong.append(address)
                continue
            if not address.lower().endswith(KIM_DOMAINS):
                wrong.append(address)
        if wrong:
            raise ValidationError(_("Keine gültige KIM-Adresse: %(addresses)s") % {"addresses": ", ".join(wrong)})
        return list(dict.fromkeys(addresses))


class DraftFilterForm(forms.Form):
    SORTS = [
        ("-created", _("Neueste zuerst")),
        ("created", _("Älteste zuerst")),
        ("patient", _("Patient")),
        ("signer", _("Unterzeichner")),
        ("author", _("Verfasser")),
        ("type", _("Dokumenttyp")),
        ("state", _("Status")),
    ]
    signer = forms.IntegerField(required=False, label=_("Unterzeichner"))
    author = forms.IntegerField(required=False, label=_("Verfasser"))
    patient = forms.CharField(required=False, max_length=100, label=_("Patient"))
    document_type = forms.ChoiceField(required=False, choices=[], label=_("Dokumenttyp"))
    state = forms.ChoiceField(required=False, choices=[], label=_("Status"))
    review = forms.ChoiceField(required=False, choices=[], label=_("Prüfung"))
    date_from = forms.DateField(required=False, label=_("von"))
    date_to = forms.DateField(required=False, label=_("bis"))
    sort = forms.ChoiceField(required=False, choices=SORTS, label=_("Sortierung"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["document_type"]).choices = [
            ("", _("alle Typen")),
            *document_type_choices(),
        ]
        cast(forms.ChoiceField, self.fields["state"]).choices = [
            ("", _("offen (in der Liste)")),
            ("all", _("alle")),
            *Draft.State.choices,
        ]
        cast(forms.ChoiceField, self.fields["review"]).choices = [("", _("Prüfung: alle")), *Draft.Review.choices]

    def to_filter(self) -> DraftFilter:
        if not self.is_valid():
            return DraftFilter()
        d = self.cleaned_data
        return DraftFilter(
            signer=d.get("signer") or None,
            author=d.get("author") or None,
            patient=d.get("patient") or "",
            document_type=d.get("document_type") or "",
            state=d.get("state") or "",
            review=d.get("review") or "",
            date_from=d.get("date_from"),
            date_to=d.get("date_to"),
            sort=d.get("sort") or "-created",
        )


SELECTION_RE = re.compile(r"^(\d{1,18}):(\d{1,9}):([0-9a-f]{64})$")


class SignForm(forms.Form):
    """What the physician confirmed: each selected draft as "<id>:<version>:<sha256>" (the row's checkbox value),
    and the workstation whose card terminal asks for the PIN."""

    workplace = forms.IntegerField(
        label=_("Arbeitsplatz"),
        error_messages={
            "required": _("Bitte wählen Sie Ihren Arbeitsplatz (das Kartenterminal, an dem Sie die PIN eingeben)."),
            "invalid": _("Bitte wählen Sie Ihren Arbeitsplatz (das Kartenterminal, an dem Sie die PIN eingeben)."),
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selected: list[Selected] = []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        values = self.data.getlist("draft") if hasattr(self.data, "getlist") else []
        seen: dict[int, Selected] = {}
        for value in values:
            match = SELECTION_RE.fullmatch(str(value))
            if match is None:
                raise ValidationError(_("Die Auswahl ist ungültig. Bitte laden Sie die Seite neu."))
            chosen = Selected(int(match[1]), int(match[2]), match[3])
            # One draft at two versions or digests is no selection the page made (which one was meant?); the same
            # value twice is one draft.
            if seen.setdefault(chosen.draft_id, chosen) != chosen:
                raise ValidationError(_("Die Auswahl ist ungültig. Bitte laden Sie die Seite neu."))
        self.selected = list(seen.values())
        if not self.selected:
            raise ValidationError(_("Bitte wählen Sie mindestens einen Entwurf aus."))
        return data


class ReviewDecisionForm(forms.Form):
    """Approve or return one draft at the version the page showed."""

    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    comment = forms.CharField(
        label=_("Kommentar an die Verfasserin oder den Verfasser"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class ReviewRequestForm(forms.Form):
    """Ask for a review of this version (again), choosing who reviews."""

    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    reviewer = UserChoiceField(queryset=None, required=False, label=_("Prüfung durch"))
    comment = forms.CharField(
        label=_("Hinweis an die Prüferin oder den Prüfer (optional)"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, reviewers: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["reviewer"]).queryset = reviewers  # type: ignore[type-arg]


class WithdrawForm(forms.Form):
    reason = forms.CharField(label=_("Grund (optional)"), required=False, max_length=500)


REVIEW_SELECTION_RE = re.compile(r"^(\d{1,18}):(\d{1,9})$")


class ReviewManyForm(forms.Form):
    """The reviewer's selection on the review list: each draft as "<id>:<version>"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selected: list[tuple[int, int]] = []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        values = self.data.getlist("draft") if hasattr(self.data, "getlist") else []
        for value in values[:500]:
            match = REVIEW_SELECTION_RE.fullmatch(str(value))
            if match is None:
                raise ValidationError(_("Die Auswahl ist ungültig. Bitte laden Sie die Seite neu."))
            self.selected.append((int(match[1]), int(match[2])))
        if len(values) > 500:
            raise ValidationError(_("Höchstens 500 Entwürfe auf einmal."))
        if not self.selected:
            raise ValidationError(_("Bitte wählen Sie mindestens einen Entwurf aus."))
        return data


class ReviewRuleForm(forms.Form):
    """A manager adds a rule: this department (functional mailbox) has this document type reviewed."""

    mailbox = forms.ModelChoiceField(queryset=None, label=_("Abteilung (Funktionspostfach)"))  # type: ignore[var-annotated]
    document_type = forms.ChoiceField(label=_("Dokumenttyp"), choices=[])

    def __init__(self, *args: Any, mailboxes: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["mailbox"]).queryset = mailboxes  # type: ignore[type-arg]
        cast(forms.ChoiceField, self.fields["document_type"]).choices = document_type_choices()


class WorkplaceChoiceForm(forms.Form):
    workplace = forms.IntegerField()
    next = forms.CharField(required=False, max_length=500)


class SignerCardForm(forms.Form):
    username = forms.CharField(label=_("Benutzername"), max_length=150)
    telematik_id = forms.CharField(label=_("Telematik-ID"), max_length=128, required=False)
    iccsn = forms.CharField(label=_("ICCSN"), max_length=24, required=False)

    def clean_username(self) -> User:
        name = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=name, is_active=True).first()
        if user is None:
            raise ValidationError(_("Keine aktive Person mit diesem Benutzernamen."))
        return user


class WorkplaceForm(forms.Form):
    workplace_id = forms.CharField(label=_("Arbeitsplatz-ID (wie im Konnektor)"), max_length=64)
    label = forms.CharField(label=_("Bezeichnung"), max_length=100)
    ct_id = forms.CharField(label=_("Kartenterminal-ID"), max_length=64, required=False)
    is_active = forms.BooleanField(label=_("aktiv"), required=False, initial=True)
