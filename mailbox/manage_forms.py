"""Forms of the managers' pages (Leitung). The KIM account's fields are the Django admin's account form (transport
security, client certificate, password handling), not a copy of them."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _

from kimportal.validators import validate_display_name
from mailbox.forms import KimAccountAdminForm
from mailbox.forms_compose import kim_address_error
from mailbox.models import Mailbox, Membership
from mailbox.selectors.access import staff_for_manager

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M"]


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        name = obj.get_full_name()
        return f"{name} ({obj.username})" if name else obj.username


class UserMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        name = obj.get_full_name()
        return f"{name} ({obj.username})" if name else obj.username


def _roles(field: forms.Field) -> None:
    cast(forms.ChoiceField, field).choices = Membership.Role.choices


class MailboxCreateForm(forms.Form):
    """Step 1 of the wizard: the mailbox as users see it, and its first owners."""

    address = forms.EmailField(label=_("KIM-Adresse"), max_length=254)
    display_name = forms.CharField(label=_("Anzeigename"), max_length=200, validators=[validate_display_name])
    kind = forms.ChoiceField(label=_("Art"), choices=Mailbox.Kind.choices, initial=Mailbox.Kind.FUNCTIONAL)
    owners = UserMultipleChoiceField(
        label=_("Eigentümer"),
        queryset=None,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text=_("Mindestens eine Person; Eigentümer verwalten später die Mitglieder des Postfachs."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelMultipleChoiceField, self.fields["owners"]).queryset = staff_for_manager()

    def clean_address(self) -> str:
        address = self.cleaned_data["address"].strip().lower()
        # An e-mail address is not yet a KIM address (an umlaut in the domain passes EmailField): the send path's rule.
        if problem := kim_address_error(address):
            raise forms.ValidationError(problem)
        if Mailbox.objects.filter(address__iexact=address).exists():
            raise forms.ValidationError(_("Ein Postfach mit dieser Adresse gibt es schon."))
        return address


class AccountForm(KimAccountAdminForm):
    """Step 2: the KIM account, with the admin form's fields and checks; the mailbox comes from step 1."""

    class Meta(KimAccountAdminForm.Meta):
        fields = [f for f in KimAccountAdminForm.Meta.fields if f != "mailbox"]


class MailboxNameForm(forms.ModelForm):
    class Meta:
        model = Mailbox
        fields = ["display_name", "kind"]


class MembershipGrantForm(forms.Form):
    """A person or a group gets a role in one mailbox (or a new role)."""

    user = UserChoiceField(label=_("Person"), queryset=None, required=False)
    group = forms.ModelChoiceField(
        label=_("oder Gruppe (Station)"), queryset=Group.objects.order_by("name"), required=False
    )
    role = forms.ChoiceField(label=_("Rolle"), choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["user"]).queryset = staff_for_manager()
        _roles(self.fields["role"])

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if bool(data.get("user")) == bool(data.get("group")):
            raise forms.ValidationError(_("Bitte genau eine Person oder eine Gruppe wählen."))
        return data


class GroupCreateForm(forms.Form):
    name = forms.CharField(label=_("Name der Gruppe (Station)"), max_length=150)


class GroupMemberForm(forms.Form):
    user = UserChoiceField(label=_("Person hinzufügen"), queryset=None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["user"]).queryset = staff_for_manager()


class ManagerAbsenceForm(forms.Form):
    """A colleague's absence and substitute, entered by a manager on their behalf."""

    person = UserChoiceField(label=_("Abwesend"), queryset=None)
    substitute = UserChoiceField(label=_("Vertretung"), queryset=None)
    starts_at = forms.DateTimeField(label=_("Beginn"), input_formats=DATETIME_FORMATS)
    ends_at = forms.DateTimeField(label=_("Ende"), input_formats=DATETIME_FORMATS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("person", "substitute"):
            cast(forms.ModelChoiceField, self.fields[name]).queryset = staff_for_manager()

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("person") and data.get("person") == data.get("substitute"):
            self.add_error("substitute", _("Niemand kann sich selbst vertreten."))
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", _("Das Ende muss nach dem Beginn liegen."))
        return data


class BulkGrantForm(forms.Form):
    """Several people and/or groups get one role in several mailboxes in one step."""

    mailboxes = forms.ModelMultipleChoiceField(
        label=_("Postfächer"), queryset=Mailbox.objects.order_by("display_name"), widget=forms.CheckboxSelectMultiple
    )
    people = UserMultipleChoiceField(
        label=_("Personen"), queryset=None, required=False, widget=forms.SelectMultiple(attrs={"size": 8})
    )
    groups = forms.ModelMultipleChoiceField(
        label=_("Gruppen (Stationen)"),
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    role = forms.ChoiceField(label=_("Rolle"), choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelMultipleChoiceField, self.fields["people"]).queryset = staff_for_manager()
        _roles(self.fields["role"])

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not data.get("people") and not data.get("groups"):
            raise forms.ValidationError(_("Bitte mindestens eine Person oder eine Gruppe wählen."))
        return data


class RemoveEverywhereForm(forms.Form):
    """Someone leaves the staff: out of every mailbox at once."""

    person = UserChoiceField(label=_("Person"), queryset=None)
    leave_groups = forms.BooleanField(
        label=_("Auch aus allen Gruppen (Stationen) entfernen"), required=False, initial=True
    )
    confirm = forms.BooleanField(label=_("Ja, aus allen Postfächern entfernen"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["person"]).queryset = staff_for_manager(active_only=False)


class AccessUserForm(forms.Form):
    person = UserChoiceField(label=_("Person"), queryset=None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["person"]).queryset = staff_for_manager(active_only=False)
