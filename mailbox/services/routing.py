"""Routing rules: applied to new mail inside the transaction that stores it, and managed by owners and managers.

Storing calls `routing_route` on the unsaved rows (assignee and state go in with the INSERT) and
`routing_record` once they have ids (responsibility periods, queue entries, audit, notifications),
both in the one transaction that stores the batch. A message is therefore routed exactly once, and
if the batch is refused the routing is rolled back with it. Round-robin and least-open-work rules
read their cursors under a row lock (SELECT … FOR UPDATE) in that transaction: a second worker waits
for the first to commit and then continues after the turn it handed out, never repeating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.texts import N_, join
from mailbox import events
from mailbox.models import AssignmentPeriod, Mailbox, MailboxQueue, Message, Notification, QueuedMessage, RoutingRule
from mailbox.selectors.mailboxes import notification_recipients
from mailbox.selectors.routing import (
    Decision,
    RoutingPlanner,
    active_rules,
    can_manage_rules,
    is_processing_member,
    sender_telematik_ids,
)
from mailbox.services.audit import audit_record
from mailbox.services.guard import short
from mailbox.services.notifications import notify

# --- applying the rules to new mail ------------------------------------------------------------------------------


@dataclass
class RoutingPlan:
    mailbox: Mailbox
    decisions: list[tuple[Message, Decision]]


def _lock_cursors(mailbox_id: int) -> dict[int, int | None]:
    # Every pool rule of the mailbox at once, in id order: workers taking them in one order cannot deadlock.
    rows = (
        RoutingRule.objects.select_for_update()
        .filter(mailbox_id=mailbox_id, assign__in=RoutingRule.POOL_MODES)
        .order_by("pk")
        .values_list("pk", "last_assignee_id")
    )
    return dict(rows)


def routing_route(*, mailbox: Mailbox, messages: list[Message]) -> RoutingPlan | None:
    """Decide for unsaved message rows what the active rules do, and set assignee and state on them.

    Call inside the storing transaction, before the rows are inserted; None when the mailbox has no rules.
    """
    rules = active_rules(mailbox.pk)
    if not rules or not messages:
        return None
    telematik = sender_telematik_ids(m.from_address for m in messages) if any(r.telematik_id for r in rules) else {}
    planner = RoutingPlanner(
        mailbox.pk, rules, at=timezone.now(), telematik_ids=telematik, cursors=lambda: _lock_cursors(mailbox.pk)
    )
    decisions = []
    for message in messages:
        decision = planner.decide(message)
        if decision.assignee_id is not None:
            message.assignee_id = decision.assignee_id
        if decision.state:
            message.state = decision.state
        decisions.append((message, decision))
    for rule_id, last in planner.moved.items():
        RoutingRule.objects.filter(pk=rule_id).update(last_assignee_id=last)
    return RoutingPlan(mailbox, decisions)


def routing_record(plan: RoutingPlan | None) -> None:
    """After the rows are inserted (same transaction): responsibility periods, queue entries, audit, notifications."""
    if plan is None:
        return
    now = timezone.now()
    periods, filed, assignees = [], [], []
    for message, decision in plan.decisions:
        if not decision:
            continue
        if decision.assignee_id is not None and decision.assign_rule is not None:
            note = join(N_("Verteilregel „%(rule)s“") % {"rule": decision.assign_rule.name}, decision.note)
            periods.append(
                AssignmentPeriod(
                    message=message, user_id=decision.assignee_id, assigned_by=None, note=note.stored, started_at=now
                )
            )
            assignees.append((message, decision))
        if decision.queue is not None:
            filed.append(QueuedMessage(message=message, queue=decision.queue, rule=decision.queue_rule, filed_at=now))
        for rule in decision.applied:
            audit_record(
                actor=None,
                action="routing.applied",
                message=message,
                rule=rule.pk,
                rule_name=rule.name,
                assignee=decision.assignee_id if decision.assign_rule is rule else None,
                state=decision.state if decision.state_rule is rule else None,
                queue=decision.queue.name if decision.queue is not None and decision.queue_rule is rule else None,
                note=decision.note.stored if decision.note and decision.assign_rule is rule else "",
            )
    AssignmentPeriod.objects.bulk_create(periods)
    QueuedMessage.objects.bulk_create(filed)
    _notify_assignees(plan.mailbox, assignees)


def _notify_assignees(mailbox: Mailbox, assigned: list[tuple[Message, Decision]]) -> None:
    if not assigned:
        return
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.in_bulk({d.assignee_id for _m, d in assigned if d.assignee_id is not None})
    recipients = {u.pk for u in notification_recipients(mailbox, list(users.values()))}
    for message, decision in assigned:
        assert decision.assignee_id is not None and decision.assign_rule is not None
        if decision.assignee_id not in recipients:
            continue
        notify(
            [users[decision.assignee_id]],
            kind=Notification.Kind.ASSIGNED,
            message=message,
            actor=None,
            params={
                "name": (N_("Verteilregel „%(rule)s“") % {"rule": decision.assign_rule.name}).stored,
                "subject": short(message.subject),
                "note": decision.note.stored if decision.note else "",
            },
        )
    events.broadcast_counters_changed(user_ids=sorted(recipients))


# --- managing the rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleData:
    """A rule as its form gives it (already cleaned)."""

    name: str
    is_active: bool
    dienstkennung: str
    sender_address: str
    sender_domain: str
    telematik_id: str
    subject_words: str
    assign: str
    assign_user_id: int | None
    assign_group_id: int | None
    set_state: str
    queue_name: str
    stop_after_match: bool

    def has_condition(self) -> bool:
        return any((self.dienstkennung, self.sender_address, self.sender_domain, self.telematik_id, self.subject_words))


def _require_rule_manager(user: Any, mailbox: Mailbox) -> None:
    if not can_manage_rules(user, mailbox):
        raise NotAllowed(_("Nur Eigentümer des Postfachs und die Leitung dürfen Verteilregeln verwalten."))


def _snapshot(rule: RoutingRule) -> dict[str, Any]:
    # What the rule does, for the audit trail: enough to see later what routed a message and who changed it.
    return {
        "rule": rule.pk,
        "name": rule.name,
        "position": rule.position,
        "active": rule.is_active,
        "conditions": {
            "dienstkennung": rule.dienstkennung,
            "sender_address": rule.sender_address,
            "sender_domain": rule.sender_domain,
            "telematik_id": rule.telematik_id,
            "subject_words": rule.subject_words,
        },
        "assign": rule.assign,
        "assign_user": rule.assign_user_id,
        "assign_group": rule.assign_group_id,
        "set_state": rule.set_state,
        "queue": rule.queue.name if rule.queue_id and rule.queue else None,
        "stop_after_match": rule.stop_after_match,
    }


def _check(mailbox: Mailbox, data: RuleData) -> None:
    if not data.name.strip():
        raise PortalError(_("Bitte geben Sie der Regel einen Namen."))
    if not data.has_condition():
        raise PortalError(_("Bitte geben Sie mindestens eine Bedingung an."))
    if not (data.assign or data.set_state or data.queue_name):
        raise PortalError(_("Bitte wählen Sie mindestens eine Aktion: zuweisen, Status setzen oder ablegen."))
    if data.assign not in RoutingRule.Assign.values:
        raise PortalError(_("Unbekannte Art der Zuweisung."))
    if data.set_state and data.set_state not in Message.State.values:
        raise PortalError(_("Unbekannter Status."))
    # A rule may name someone who is away today (their substitute gets the mail then), not a non-member.
    if data.assign == RoutingRule.Assign.USER:
        if data.assign_user_id is None or not is_processing_member(mailbox.pk, data.assign_user_id):
            raise PortalError(_("Bitte wählen Sie eine Person, die das Postfach bearbeiten darf."))
    if data.assign_group_id is not None and not Group.objects.filter(pk=data.assign_group_id).exists():
        raise PortalError(_("Diese Gruppe gibt es nicht."))


def rule_fill(rule: RoutingRule, data: RuleData) -> None:
    """Copy a form's values onto a rule, normalised, without queries (the queue aside): for saving, and for
    "Regel testen" on an unsaved rule."""
    rule.name = data.name.strip()
    rule.is_active = data.is_active
    rule.dienstkennung = " ".join(data.dienstkennung.split())
    rule.sender_address = data.sender_address.strip().lower()
    rule.sender_domain = data.sender_domain.strip().lstrip("@").lower()
    rule.telematik_id = data.telematik_id.strip()
    rule.subject_words = " ".join(data.subject_words.split())
    rule.assign = data.assign
    rule.assign_user_id = data.assign_user_id if data.assign == RoutingRule.Assign.USER else None
    rule.assign_group_id = data.assign_group_id if data.assign in RoutingRule.POOL_MODES else None
    rule.set_state = data.set_state
    rule.stop_after_match = data.stop_after_match


def _apply(rule: RoutingRule, mailbox: Mailbox, data: RuleData) -> None:
    rule_fill(rule, data)
    name = " ".join(data.queue_name.split())
    rule.queue = MailboxQueue.objects.get_or_create(mailbox=mailbox, name=name)[0] if name else None
    rule.updated_at = timezone.now()


EDITABLE = [
    "name",
    "is_active",
    "dienstkennung",
    "sender_address",
    "sender_domain",
    "telematik_id",
    "subject_words",
    "assign",
    "assign_user",
    "assign_group",
    "set_state",
    "queue",
    "stop_after_match",
    "updated_at",
]


@transaction.atomic
def routing_rule_create(*, user: Any, mailbox: Mailbox, data: RuleData) -> RoutingRule:
    _require_rule_manager(user, mailbox)
    _check(mailbox, data)
    last = RoutingRule.objects.filter(mailbox=mailbox).order_by("-position").values_list("position", flat=True).first()
    rule = RoutingRule(mailbox=mailbox, position=(last or 0) + 1)
    _apply(rule, mailbox, data)
    rule.save(force_insert=True)
    audit_record(actor=user, action="routing.rule_changed", mailbox=mailbox, change="created", **_snapshot(rule))
    return rule


@transaction.atomic
def routing_rule_update(
    *, user: Any, mailbox: Mailbox, rule_id: int, data: RuleData, seen: datetime | None = None
) -> RoutingRule:
    """Save a rule's form. `seen` is the rule's last change as the form showed it: when the rule has changed since
    (another tab, another owner, switched off), nothing is saved and Conflict carries the current rule."""
    _require_rule_manager(user, mailbox)
    _check(mailbox, data)
    rule = RoutingRule.objects.select_for_update().get(pk=rule_id, mailbox=mailbox)
    if seen is not None and rule.updated_at != seen:
        raise Conflict(
            _(
                "Die Regel wurde inzwischen an anderer Stelle geändert. Ihre Eingaben stehen noch im Formular: "
                "Speichern überschreibt die andere Änderung."
            ),
            fresh=rule,
        )
    before = _snapshot(rule)
    _apply(rule, mailbox, data)
    # Only the edited fields: the round-robin cursor belongs to routing.
    rule.save(update_fields=EDITABLE)
    audit_record(
        actor=user, action="routing.rule_changed", mailbox=mailbox, change="updated", before=before, **_snapshot(rule)
    )
    return rule


@transaction.atomic
def routing_rule_set_active(*, user: Any, mailbox: Mailbox, rule_id: int, active: bool) -> RoutingRule:
    _require_rule_manager(user, mailbox)
    rule = RoutingRule.objects.select_for_update().get(pk=rule_id, mailbox=mailbox)
    if rule.is_active != active:
        RoutingRule.objects.filter(pk=rule.pk).update(is_active=active, updated_at=timezone.now())
        rule.is_active = active
        change = "activated" if active else "deactivated"
        audit_record(
            actor=user, action="routing.rule_changed", mailbox=mailbox, change=change, rule=rule.pk, name=rule.name
        )
    return rule


@transaction.atomic
def routing_rule_move(*, user: Any, mailbox: Mailbox, rule_id: int, up: bool) -> None:
    """One place up or down; positions are renumbered 1…n so they stay a plain sequence."""
    _require_rule_manager(user, mailbox)
    rules = list(RoutingRule.objects.select_for_update().filter(mailbox=mailbox).order_by("position", "id"))
    index = next((i for i, r in enumerate(rules) if r.pk == rule_id), None)
    if index is None:
        raise RoutingRule.DoesNotExist
    other = index - 1 if up else index + 1
    if not 0 <= other < len(rules):
        return
    rules[index], rules[other] = rules[other], rules[index]
    for position, rule in enumerate(rules, start=1):
        if rule.position != position:
            RoutingRule.objects.filter(pk=rule.pk).update(position=position)
            rule.position = position
    moved = rules[other]
    audit_record(
        actor=user,
        action="routing.rule_changed",
        mailbox=mailbox,
        change="moved",
        rule=moved.pk,
        name=moved.name,
        position=moved.position,
    )


@transaction.atomic
def routing_rule_delete(*, user: Any, mailbox: Mailbox, rule_id: int) -> None:
    _require_rule_manager(user, mailbox)
    rule = RoutingRule.objects.select_for_update(of=("self",)).select_related("queue").get(pk=rule_id, mailbox=mailbox)
    snapshot = _snapshot(rule)
    rule.delete()
    audit_record(actor=user, action="routing.rule_changed", mailbox=mailbox, change="deleted", **snapshot)
