from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from directory import codes
from directory.query import Criteria

MAX_INPUT = 200


class SearchForm(forms.Form):
    q = forms.CharField(label=_("Suche"), required=False, max_length=MAX_INPUT)
    name = forms.CharField(label=_("Name"), required=False, max_length=MAX_INPUT)
    organization = forms.CharField(label=_("Organisation"), required=False, max_length=MAX_INPUT)
    place = forms.CharField(label=_("Ort oder PLZ"), required=False, max_length=MAX_INPUT)
    specialty = forms.ChoiceField(label=_("Fachrichtung"), required=False)
    kind = forms.ChoiceField(label=_("Art"), required=False)
    kim_only = forms.BooleanField(label=_("Nur mit KIM-Adresse"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Grouped by card type: institutions and people use different code systems for the same subject.
        order = (codes.SpecialtyGroup.ORGANIZATION, codes.SpecialtyGroup.PERSON, codes.SpecialtyGroup.PHARMACY)
        groups: dict[str, list[tuple[str, str]]] = {str(g): [] for g in order}
        for spec in codes.specialties():
            groups.setdefault(str(spec.group), []).append((spec.key, spec.label))
        cast(forms.ChoiceField, self.fields["specialty"]).choices = [("", _("alle Fachrichtungen")), *groups.items()]
        cast(forms.ChoiceField, self.fields["kind"]).choices = [("", _("alle Arten"))] + [
            (k.key, k.label) for k in codes.KINDS
        ]

    def criteria(self) -> Criteria:
        data = self.cleaned_data
        return Criteria(
            q=data["q"],
            name=data["name"],
            organization=data["organization"],
            place=data["place"],
            specialty=data["specialty"],
            kind=data["kind"],
            kim_only=data["kim_only"],
        )


class ShownForm(forms.Form):
    """How many hits a list shows ("Weitere Treffer anzeigen"); anything unusable means the first page."""

    anzahl = forms.IntegerField(required=False, min_value=1, max_value=10_000)


class PickerForm(forms.Form):
    picker_q = forms.CharField(label=_("Suche"), required=False, max_length=MAX_INPUT)
    field = forms.SlugField(label=_("Feld"), required=False, max_length=50)


class AddressForm(forms.Form):
    address = forms.EmailField(max_length=254)
    field = forms.SlugField(required=False, max_length=50)
