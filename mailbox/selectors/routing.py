"""Routing rules as their managers see them, and the decisions rules make (shared by routing and its preview).

Matching is pure: a rule looks at the stored message fields (Dienstkennung, sender address and domain,
subject) and at the sender's Telematik-ID. KIM mail carries no Telematik-ID header, so it comes from the
local address book (directory contacts, kept from the VZD): a sender not in it matches no Telematik-ID
rule. No directory query happens while mail is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from directory.models import Contact
from kimportal.texts import N_, StoredText
from mailbox.models import Absence, Mailbox, MailboxQueue, Membership, Message, RoutingRule
from mailbox.permissions import is_manager, members_q, user_role
from mailbox.selectors.mailboxes import display_name

PREVIEW_LIMIT = 100
PROCESSING_ROLES = [Membership.Role.PROCESSOR, Membership.Role.OWNER]


# --- who manages the rules ---------------------------------------------------------------------------------------


def can_manage_rules(user: Any, mailbox: Mailbox | int) -> bool:
    """Owners of the mailbox and the house's managers (Leitung)."""
    return is_manager(user) or user_role(user, mailbox) == Membership.Role.OWNER


def routing_mailbox_for_user(user: Any, pk: int) -> Mailbox:
    """The mailbox whose rules the user may manage, with their role in it as `user_role` (None for a manager
    who is no member); Mailbox.DoesNotExist for everyone else, so a refusal looks like a missing mailbox."""
    mailbox = Mailbox.objects.filter(pk=pk).first()
    if mailbox is None or not can_manage_rules(user, mailbox):
        raise Mailbox.DoesNotExist
    mailbox.user_role = user_role(user, mailbox)
    return mailbox


def rule_list(mailbox: Mailbox) -> list[RoutingRule]:
    """The rules in order; `person_gone` marks a rule whose person can no longer work the mailbox (removed, a
    reader now, deactivated): routing leaves its mail unassigned, and its managers should see why."""
    rules = list(
        RoutingRule.objects.filter(mailbox=mailbox)
        .select_related("assign_user", "assign_group", "queue")
        .order_by("position", "id")
    )
    named = {r.assign_user_id for r in rules if r.assign == RoutingRule.Assign.USER}
    present = set(_processing_members(mailbox.pk).filter(pk__in=named).values_list("pk", flat=True)) if named else set()
    for rule in rules:
        rule.person_gone = rule.assign == RoutingRule.Assign.USER and rule.assign_user_id not in present
    return rules


def rule_get(mailbox: Mailbox, pk: int) -> RoutingRule:
    return RoutingRule.objects.select_related("assign_user", "assign_group", "queue").get(mailbox=mailbox, pk=pk)


def queue_list(mailbox: Mailbox | int) -> list[MailboxQueue]:
    return list(MailboxQueue.objects.filter(mailbox=mailbox).order_by("name"))


def active_rules(mailbox_id: int) -> list[RoutingRule]:
    """The rules routing applies, in order (one query; the objects the rules name come along)."""
    return list(
        RoutingRule.objects.filter(mailbox_id=mailbox_id, is_active=True)
        .select_related("queue", "assign_user")
        .order_by("position", "id")
    )


# --- matching ----------------------------------------------------------------------------------------------------


def _dienstkennung_parts(value: str) -> list[str]:
    parts = [p.strip().casefold() for p in " ".join(value.split()).split(";")]
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _part_matches(pattern: str, value: str) -> bool:
    # A trailing "*" makes a part a prefix ("ABR-*", "5-*"), as the gematik list writes its patterns.
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def dienstkennung_matches(pattern: str, value: str) -> bool:
    """`eAU` matches every eAU; `eAU;Fehler-Kasse` that message type in any version; parts compare case-blind."""
    want, have = _dienstkennung_parts(pattern), _dienstkennung_parts(value)
    if not want or len(want) > len(have):
        return False
    return all(_part_matches(w, h) for w, h in zip(want, have, strict=False))


def sender_domain_matches(domain: str, address: str) -> bool:
    """The address's domain is the rule's domain or lies below it (`tk.kim.telematik` matches `x.tk.kim.telematik`)."""
    want = domain.strip().lstrip("@").casefold()
    have = address.rpartition("@")[2].casefold()
    return bool(want) and "@" in address and (have == want or have.endswith("." + want))


def rule_matches(rule: RoutingRule, message: Message, telematik_id: str = "") -> bool:
    """Every filled condition holds (a rule without conditions matches nothing)."""
    checks: list[bool] = []
    if rule.dienstkennung:
        checks.append(dienstkennung_matches(rule.dienstkennung, message.dienstkennung))
    if rule.sender_address:
        checks.append(rule.sender_address.strip().casefold() == message.from_address.strip().casefold())
    if rule.sender_domain:
        checks.append(sender_domain_matches(rule.sender_domain, message.from_address))
    if rule.telematik_id:
        want = rule.telematik_id.strip().casefold()
        checks.append(bool(telematik_id) and _part_matches(want, telematik_id.strip().casefold()))
    if rule.subject_words:
        subject = message.subject.casefold()
        checks.append(all(word in subject for word in rule.subject_words.casefold().split()))
    return bool(checks) and all(checks)


def sender_telematik_ids(addresses: Iterable[str]) -> dict[str, str]:
    """Lower-cased KIM address → Telematik-ID, for the senders the local address book knows."""
    wanted = {a.strip().lower() for a in addresses if a}
    if not wanted:
        return {}
    rows = Contact.objects.filter(kim_address__in=wanted).exclude(telematik_id="")
    return dict(rows.values_list("kim_address", "telematik_id"))


# --- whom a rule assigns -----------------------------------------------------------------------------------------


def next_in_turn(candidates: Iterable[int], last: int | None, counts: dict[int, int] | None = None) -> int | None:
    """The next person after `last` in a fixed order (user id), wrapping; with `counts`, the one with the
    least open work, ties going to whoever's turn comes first. The same inputs always give the same person."""
    order = sorted(set(candidates))
    if not order:
        return None
    start = next((i for i, pk in enumerate(order) if last is None or pk > last), 0)
    rotated = order[start:] + order[:start]
    if counts is None:
        return rotated[0]
    return min(rotated, key=lambda pk: counts.get(pk, 0))


def _processing_members(mailbox_id: int) -> Any:
    memberships = Membership.objects.filter(mailbox_id=mailbox_id, role__in=PROCESSING_ROLES)
    return get_user_model().objects.filter(members_q(memberships), is_active=True)


def is_processing_member(mailbox_id: int, user_id: int) -> bool:
    return bool(_processing_members(mailbox_id).filter(pk=user_id).exists())


def present_members(mailbox_id: int, *, group_id: int | None, at: datetime) -> list[int]:
    """Ids of the active processing members (of the group, if one is given) who are not absent at `at`.

    "Present" means not away according to their absences: being signed in says nothing on a ward PC.
    """
    absent = Absence.objects.filter(user=OuterRef("pk"), starts_at__lte=at, ends_at__gt=at)
    users = _processing_members(mailbox_id).exclude(Exists(absent))
    if group_id is not None:
        users = users.filter(groups=group_id)
    return sorted(set(users.values_list("pk", flat=True)))


def open_work_counts(mailbox_id: int) -> dict[int, int]:
    """Open (not done) messages per assignee in this mailbox."""
    rows = (
        Message.objects.filter(mailbox_id=mailbox_id, assignee__isnull=False)
        .exclude(state=Message.State.DONE)
        .order_by()
        .values("assignee_id")
        .annotate(c=Count("pk"))
    )
    return {row["assignee_id"]: row["c"] for row in rows}


@dataclass
class Decision:
    """What the rules do with one message. Each of assignee, state and queue is set by the first rule that sets it."""

    applied: list[RoutingRule] = field(default_factory=list)
    assignee_id: int | None = None
    assign_rule: RoutingRule | None = None
    # Why the assignment is what it is (absent, substitute …): kept untranslated, shown in the reader's language.
    note: StoredText | None = None
    state: str = ""
    state_rule: RoutingRule | None = None
    queue: MailboxQueue | None = None
    queue_rule: RoutingRule | None = None

    def __bool__(self) -> bool:
        return bool(self.applied)


def _key(rule: RoutingRule) -> int:
    # An unsaved rule (tested from its form) has no id yet: 0 stands for it.
    return rule.pk or 0


class RoutingPlanner:
    """Decides, message after message, what the mailbox's rules do; remembers the turns it handed out.

    `cursors` is called once, when a rule first assigns from a pool: routing passes a locking read of the
    round-robin cursors (the lock serialises concurrent workers), the preview a plain read. Open-work
    counts are read after that, and both are carried forward in memory through the batch.
    """

    def __init__(
        self,
        mailbox_id: int,
        rules: list[RoutingRule],
        *,
        at: datetime,
        telematik_ids: dict[str, str] | None = None,
        cursors: Callable[[], dict[int, int | None]],
    ) -> None:
        self.mailbox_id = mailbox_id
        self.rules = rules
        self.at = at
        self.telematik_ids = telematik_ids or {}
        self._cursor_source = cursors
        self._cursors: dict[int, int | None] | None = None
        self._counts: dict[int, int] | None = None
        self._pools: dict[int, list[int]] = {}
        self._members: set[int] | None = None
        self._substitutes: dict[int, int | None] = {}
        self.moved: dict[int, int] = {}  # rule id → the last person it assigned (cursor to write back)

    def decide(self, message: Message) -> Decision:
        decision = Decision()
        telematik_id = self.telematik_ids.get(message.from_address.strip().lower(), "")
        for rule in self.rules:
            if not rule_matches(rule, message, telematik_id):
                continue
            decision.applied.append(rule)
            if rule.assign and decision.assign_rule is None:
                self._assign(rule, decision)
            if rule.set_state and decision.state_rule is None:
                decision.state, decision.state_rule = rule.set_state, rule
            if rule.queue_id and decision.queue_rule is None:
                decision.queue, decision.queue_rule = rule.queue, rule
            if rule.stop_after_match:
                break
        if decision.assignee_id is not None and self._counts is not None:
            self._counts[decision.assignee_id] = self._counts.get(decision.assignee_id, 0) + 1
        return decision

    def _assign(self, rule: RoutingRule, decision: Decision) -> None:
        decision.assign_rule = rule
        if rule.assign == RoutingRule.Assign.USER:
            decision.assignee_id, decision.note = self._person(rule)
            return
        if self._cursors is None:
            self._cursors = self._cursor_source()
            self._counts = open_work_counts(self.mailbox_id)
        key = _key(rule)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = present_members(self.mailbox_id, group_id=rule.assign_group_id, at=self.at)
        last = self.moved.get(key, self._cursors.get(key))
        counts = self._counts if rule.assign == RoutingRule.Assign.LEAST_OPEN else None
        chosen = next_in_turn(pool, last, counts)
        if chosen is None:
            decision.note = N_("Niemand anwesend: die Nachricht bleibt unzugewiesen.")
            return
        decision.assignee_id = chosen
        self.moved[key] = chosen

    def _substitute(self, user_id: int) -> int | None:
        """The substitute of a user who is away at `at`, else None (an absence always names one)."""
        if user_id not in self._substitutes:
            absence = (
                Absence.objects.filter(user_id=user_id, starts_at__lte=self.at, ends_at__gt=self.at)
                .order_by("starts_at", "pk")
                .first()
            )
            self._substitutes[user_id] = absence.substitute_id if absence else None
        return self._substitutes[user_id]

    def _person(self, rule: RoutingRule) -> tuple[int | None, StoredText | None]:
        """The rule's person, or their substitute while they are away (as a manual assignment does); nobody when
        the substitute cannot work the mailbox (no longer a member, say) or is away as well."""
        if self._members is None:
            self._members = set(_processing_members(self.mailbox_id).values_list("pk", flat=True))
        person = rule.assign_user_id
        if person is None or person not in self._members:
            return None, N_("Die Person der Regel kann das Postfach nicht bearbeiten: unzugewiesen.")
        substitute = self._substitute(person)
        if substitute is None:
            return person, None
        name = display_name(rule.assign_user) if rule.assign_user else str(person)
        if substitute in self._members and self._substitute(substitute) is not None:
            # The substitute is away too: their mail would wait unseen as well (a pool rule skips the absent alike).
            return None, N_("%(name)s und die Vertretung sind abwesend: unzugewiesen.") % {"name": name}
        if substitute in self._members:
            return substitute, N_("Vertretung für %(name)s (abwesend)") % {"name": name}
        # Assigned to someone away, a letter would wait unseen until they are back: the queue shows it to everyone.
        return None, N_(
            "%(name)s ist abwesend und die Vertretung kann das Postfach nicht bearbeiten: unzugewiesen."
        ) % {"name": name}


# --- "Regel testen" ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewRow:
    message: Message
    assignee: str
    state: str
    queue: str
    note: str


@dataclass(frozen=True)
class Preview:
    checked: int
    rows: list[PreviewRow]
    show_subjects: bool


def rule_preview(
    user: Any, mailbox: Mailbox, rule: RoutingRule, *, queue_name: str = "", limit: int = PREVIEW_LIMIT
) -> Preview:
    """Which of the mailbox's last `limit` messages the rule would match and what it would do, as if they
    arrived now (oldest first, turns continuing from the rule's cursor). Reads only; changes nothing.

    The rule may be unsaved (tested from its form); `queue_name` is then the queue it would file into.
    Subjects are shown only to members who may read the mailbox: a manager without membership sees when,
    from whom and of which kind, not what the mail is about.
    """
    recent = list(
        Message.objects.filter(mailbox=mailbox)
        .only("pk", "received_at", "from_address", "from_name", "subject", "dienstkennung", "mailbox_id")
        .order_by("-received_at", "-id")[:limit]
    )
    recent.reverse()
    cursor = rule.last_assignee_id
    planner = RoutingPlanner(
        mailbox.pk,
        [rule],
        at=timezone.now(),
        telematik_ids=sender_telematik_ids(m.from_address for m in recent) if rule.telematik_id else {},
        cursors=lambda: {_key(rule): cursor},
    )
    if not queue_name and rule.queue_id is not None and rule.queue is not None:
        queue_name = rule.queue.name
    names = {
        pk: f"{first} {last}".strip() or username
        for pk, first, last, username in _processing_members(mailbox.pk).values_list(
            "pk", "first_name", "last_name", "username"
        )
    }
    states = dict(Message.State.choices)
    rows = []
    for message in recent:
        decision = planner.decide(message)
        if not decision:
            continue
        rows.append(
            PreviewRow(
                message=message,
                assignee=names.get(decision.assignee_id, "") if decision.assignee_id else "",
                state=str(states.get(decision.state, "")) if decision.state else "",
                queue=queue_name,
                note=str(decision.note or ""),
            )
        )
    return Preview(checked=len(recent), rows=rows, show_subjects=user_role(user, mailbox) is not None)
