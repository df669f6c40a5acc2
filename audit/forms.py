from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.selectors import AuditFilter

# Messages and the trail's positions are numbered by PostgreSQL bigints. A larger number names nothing: searched for,
# it would answer "no events" as if the trail had been read, so the form refuses it as it refuses a word.
LARGEST_NUMBER = models.BigIntegerField.MAX_BIGINT


class WallClockField(forms.DateTimeField):
    """A time as the house's clocks showed it. In the night the clocks change it names two instants (02:30 in
    October) or none (02:30 in March); Django refuses both, so the hour an incident happened in could not be
    searched. The bound takes the earlier of the two readings for "from" and the later for "to": a search of the
    trail may show a little more, never less."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"})

    def __init__(self, *, earliest: bool, **kwargs: Any) -> None:
        self.earliest = earliest
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> datetime | None:
        try:
            return super().to_python(value)
        except ValidationError as error:
            if error.code != "ambiguous_timezone":
                raise
        with timezone.override(UTC):  # parsed only: in UTC every wall-clock time is exactly one instant
            wall = super().to_python(value)
        assert wall is not None
        zone = timezone.get_current_timezone()
        readings = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
        return min(readings) if self.earliest else max(readings)


class AuditSearchForm(forms.Form):
    user = forms.CharField(label=_("Benutzer"), required=False, max_length=150)
    mailbox = forms.CharField(label=_("Postfach (Adresse oder Nummer)"), required=False, max_length=254)
    message = forms.IntegerField(label=_("Nachricht (Nummer)"), required=False, min_value=1, max_value=LARGEST_NUMBER)
    patient = forms.CharField(label=_("Patientenbezug (Text in Betreff oder Details)"), required=False, max_length=200)
    action = forms.CharField(label=_("Aktion"), required=False, max_length=60)
    since = WallClockField(label=_("von"), required=False, earliest=True)
    until = WallClockField(label=_("bis"), required=False, earliest=False)
    # Where "Ältere Ereignisse" goes on: the position to continue before. Carried by that link only, never by the
    # form (a new search starts at the newest events). A hand-edited one that is no position is refused: answered
    # with the newest events or with none, the page would look like the one asked for.
    vor = forms.IntegerField(
        label=_("Seite"),
        required=False,
        min_value=1,
        max_value=LARGEST_NUMBER,
        widget=forms.HiddenInput,
        error_messages={
            code: _("Die Seitenangabe im Link ist ungültig. Bitte neu suchen.")
            for code in ("invalid", "min_value", "max_value")
        },
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
