from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from audit.selectors import AuditFilter


class AuditSearchForm(forms.Form):
    user = forms.CharField(label=_("Benutzer"), required=False, max_length=150)
    mailbox = forms.CharField(label=_("Postfach (Adresse oder Nummer)"), required=False, max_length=254)
    message = forms.IntegerField(label=_("Nachricht (Nummer)"), required=False, min_value=1)
    patient = forms.CharField(label=_("Patientenbezug (Text in Betreff oder Details)"), required=False, max_length=200)
    action = forms.CharField(label=_("Aktion"), required=False, max_length=60)
    since = forms.DateTimeField(
        label=_("von"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        label=_("bis"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def clean(self):
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until <= since:
            raise forms.ValidationError(_("„bis“ muss nach „von“ liegen."))
        return data

    def to_filter(self) -> AuditFilter:
        data = self.cleaned_data
        return AuditFilter(
            user=data["user"].strip(),
            mailbox=data["mailbox"].strip(),
            message=data["message"],
            patient=data["patient"].strip(),
            action=data["action"].strip(),
            since=data["since"],
            until=data["until"],
        )
