"""The form of a routing rule: conditions and actions, parsed into the service's RuleData."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib.auth.models import Group
from django.http import QueryDict
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

from mailbox.models import Message, RoutingRule
from mailbox.services.routing import RuleData, rule_fill

CONDITIONS = ("dienstkennung", "sender_address", "sender_domain", "telematik_id", "subject_words")


class RoutingRuleForm(forms.Form):
    name = forms.CharField(label=_("Name der Regel"), max_length=100)
    is_active = forms.BooleanField(label=_("aktiv"), required=False, initial=True)

    dienstkennung = forms.CharField(
        label=_("Dienstkennung"),
        required=False,
        max_length=200,
        help_text=_("z. B. „eAU“ oder „eAU;Fehler-Kasse“; ein * am Ende eines Teils passt auf alles, was so beginnt."),
    )
    sender_address = forms.EmailField(label=_("Absenderadresse"), required=False, max_length=320)
    sender_domain = forms.CharField(
        label=_("Absenderdomäne"), required=False, max_length=255, help_text=_("passt auch auf Unterdomänen")
    )
    telematik_id = forms.CharField(
        label=_("Telematik-ID des Absenders"),
        required=False,
        max_length=128,
        help_text=_(
            "aus dem Adressbuch; Absender, die dort fehlen, passen nicht. Ein * am Ende: alle, die so beginnen."
        ),
    )
    subject_words = forms.CharField(
        label=_("Wörter im Betreff"),
        required=False,
        max_length=300,
        help_text=_("alle Wörter müssen vorkommen (Groß-/Kleinschreibung egal)"),
    )

    assign = forms.ChoiceField(label=_("Zuweisen"), required=False, choices=[])
    assign_user = forms.TypedChoiceField(label=_("Person"), required=False, coerce=int, empty_value=None, choices=[])
    assign_group = forms.ModelChoiceField(
        label=_("nur aus der Gruppe (Station)"),
        required=False,
        queryset=Group.objects.none(),
        empty_label=_("alle bearbeitenden Mitglieder"),
    )
    set_state = forms.ChoiceField(label=_("Status setzen"), required=False, choices=[])
    queue_name = forms.CharField(
        label=_("In Ablage legen"),
        required=False,
        max_length=80,
        help_text=_("Name der Ablage, z. B. „Aufnahme“; eine neue Ablage wird angelegt"),
    )
    stop_after_match = forms.BooleanField(label=_("danach keine weiteren Regeln prüfen"), required=False, initial=True)
    # The rule's last change as the page saw it: a save from a page older than that is refused (two tabs, two
    # owners), instead of silently undoing the other change.
    seen = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, members: list[tuple[int, str]], queues: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["assign"]).choices = RoutingRule.Assign.choices
        cast(forms.ChoiceField, self.fields["assign_user"]).choices = [("", "—"), *members]
        cast(forms.ModelChoiceField, self.fields["assign_group"]).queryset = Group.objects.order_by("name")
        cast(forms.ChoiceField, self.fields["set_state"]).choices = [
            ("", _("nicht ändern")),
            *Message.State.choices,
        ]
        self.queue_names = queues

    @classmethod
    def initial_for(cls, rule: RoutingRule) -> dict[str, Any]:
        return {
            "name": rule.name,
            "is_active": rule.is_active,
            **{c: getattr(rule, c) for c in CONDITIONS},
            "assign": rule.assign,
            "assign_user": rule.assign_user_id,
            "assign_group": rule.assign_group_id,
            "set_state": rule.set_state,
            "queue_name": rule.queue.name if rule.queue_id and rule.queue else "",
            "stop_after_match": rule.stop_after_match,
            "seen": rule.updated_at.isoformat(),
        }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not any((data.get(c) or "").strip() for c in CONDITIONS):
            raise forms.ValidationError(_("Bitte geben Sie mindestens eine Bedingung an."))
        if not (data.get("assign") or data.get("set_state") or (data.get("queue_name") or "").strip()):
            raise forms.ValidationError(
                _("Bitte wählen Sie mindestens eine Aktion: zuweisen, Status setzen oder ablegen.")
            )
        if data.get("assign") == RoutingRule.Assign.USER and not data.get("assign_user"):
            self.add_error("assign_user", _("Bitte wählen Sie die Person, der zugewiesen wird."))
        return data

    def seen_at(self) -> datetime | None:
        """When the rule had last changed as the page showed it; None from a page that did not say."""
        try:
            return parse_datetime(self.cleaned_data.get("seen") or "")
        except ValueError:
            return None

    def show_current(self, rule: RoutingRule) -> None:
        """After a refused save: the page keeps the user's input and now knows the rule's current state, so that
        saving again is a deliberate overwrite."""
        data = cast(QueryDict, self.data).copy()
        data[self.add_prefix("seen")] = rule.updated_at.isoformat()
        self.data = data

    def rule_data(self) -> RuleData:
        data = self.cleaned_data
        group = data.get("assign_group")
        return RuleData(
            name=data["name"],
            is_active=bool(data.get("is_active")),
            dienstkennung=data.get("dienstkennung") or "",
            sender_address=data.get("sender_address") or "",
            sender_domain=data.get("sender_domain") or "",
            telematik_id=data.get("telematik_id") or "",
            subject_words=data.get("subject_words") or "",
            assign=data.get("assign") or "",
            assign_user_id=data.get("assign_user"),
            assign_group_id=group.pk if group is not None else None,
            set_state=data.get("set_state") or "",
            queue_name=data.get("queue_name") or "",
            stop_after_match=bool(data.get("stop_after_match")),
        )

    def unsaved_rule(self, mailbox: Any, rule: RoutingRule | None = None) -> RoutingRule:
        """The rule as the form describes it, not saved: what "Regel testen" runs (the cursor stays the rule's)."""
        preview = RoutingRule(
            pk=rule.pk if rule is not None else None,
            mailbox=mailbox,
            last_assignee_id=rule.last_assignee_id if rule is not None else None,
        )
        rule_fill(preview, self.rule_data())
        return preview
