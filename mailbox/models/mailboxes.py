"""Mailboxes (KIM addresses as users see them) and who may use them."""

from __future__ import annotations

from typing import Any, TypedDict

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from kimportal.prepared import PreparedQuery
from kimportal.requestscope import scoped
from kimportal.validators import validate_display_name


def member_q(user: Any, prefix: str = "") -> models.Q:
    """Memberships that apply to the user: their own or one of their groups' (wards). The one place for this rule.

    `user` is a user, or an OuterRef to a user id column of the query around (a draft's author, signing)."""
    if isinstance(user, models.OuterRef):
        from django.contrib.auth.models import Group

        # The groups are a query of their own, one level further in: the reference reaches one level further out.
        groups = Group.objects.filter(user=models.OuterRef(user))
    else:
        groups = user.groups.all()
    return models.Q(**{f"{prefix}user": user}) | models.Q(**{f"{prefix}group__in": groups})


def memberships_in_force(user: Any, *, while_switched_off: bool = False) -> models.QuerySet[Membership]:
    """The memberships that give the user a role now: their own or their groups', while the account is active and
    the mailbox is switched on. The one place for this rule (pages, sockets, tasks and signing's orphans all ask
    here); `user` is a user or an OuterRef to a user id column (see member_q).

    is_active is read from the database, not from the user object: a socket's user was loaded when it connected,
    and a deactivated account must lose access at once.

    `while_switched_off`: mailboxes switched off count too, giving the role the user will have when the mailbox
    is on again. That decides who keeps their work in it (mailbox.services.members); it never gives access."""
    from django.contrib.auth import get_user_model

    user_id = models.OuterRef(user) if isinstance(user, models.OuterRef) else user.pk
    active = models.Exists(get_user_model().objects.filter(pk=user_id, is_active=True))
    switched_on = {} if while_switched_off else {"mailbox__is_active": True}
    return Membership.objects.filter(member_q(user), active, **switched_on)


class _MailboxIdRow(TypedDict):
    mailbox_id: int


def member_mailbox_ids(user: Any) -> models.QuerySet[Membership, _MailboxIdRow]:
    """Subquery of the active mailbox ids an active user belongs to, directly or through a group (ward)."""
    return memberships_in_force(user).values("mailbox_id")


def member_roles(user: Any) -> dict[int, str]:
    """The user's strongest role in each active mailbox (one query), read once per HTTP request.

    Outside a request (sockets, tasks) it is read every time; see kimportal.requestscope.
    """

    def read() -> dict[int, str]:
        roles: dict[int, str] = {}
        for mailbox_id, role in _MEMBER_ROLES.rows(user.pk):
            if mailbox_id not in roles or Membership.RANK[role] > Membership.RANK[roles[mailbox_id]]:
                roles[mailbox_id] = role
        return roles

    return scoped(("mailbox.member_roles", user.pk), read)


def _member_roles_query(user_id: int) -> models.QuerySet[Membership, tuple[int, str]]:
    from django.contrib.auth import get_user_model

    # An unsaved stand-in with the id is all member_q needs (its groups subquery filters by the id).
    return member_mailbox_ids(get_user_model()(pk=user_id)).values_list("mailbox_id", "role")


# Asked by every page and socket check: compiled once (kimportal.prepared), not per call.
_MEMBER_ROLES = PreparedQuery(_member_roles_query)


class MailboxQuerySet(models.QuerySet["Mailbox"]):
    def visible_to(self, user: Any) -> MailboxQuerySet:
        if not user.is_authenticated:
            return self.none()
        # As MessageQuerySet.visible_to: the ids, read once per request or (sockets, tasks) now.
        return self.filter(pk__in=list(member_roles(user)))


class Mailbox(models.Model):
    """A KIM address as the portal's users see it: functional (shared) or personal."""

    class Kind(models.TextChoices):
        FUNCTIONAL = "functional", _("Funktionspostfach")
        PERSONAL = "personal", _("Persönliches Postfach")

    address = models.EmailField(_("KIM-Adresse"), max_length=254, unique=True)
    # Shown in every list and written into the From of its mail: one line, no control characters.
    display_name = models.CharField(_("Anzeigename"), max_length=200, validators=[validate_display_name])
    kind = models.CharField(_("Art"), max_length=20, choices=Kind.choices, default=Kind.FUNCTIONAL)
    is_active = models.BooleanField(_("aktiv"), default=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", through_fields=("mailbox", "user"), related_name="mailboxes"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Service level: a new message should be claimed by someone within this many working hours
    # (None: no SLA). Overdue messages are highlighted on the dashboard and notified to the owners.
    sla_first_claim_hours = models.PositiveSmallIntegerField(
        _("Erste Bearbeitung binnen (Arbeitsstunden)"), null=True, blank=True
    )
    # Data minimisation: content of done messages is deleted this many days after "erledigt" (None: kept).
    retention_days_after_done = models.PositiveIntegerField(
        _("Inhalte löschen nach (Tagen ab erledigt)"), null=True, blank=True
    )

    # eArztbrief: answer an incoming Arztbrief;VHitG-Versand with an Arztbrief;Eingangsbestaetigung by itself
    # (else the acknowledgement is only offered on the message's page).
    auto_acknowledge_arztbrief = models.BooleanField(
        _("Eingangsbestätigung für eArztbriefe automatisch senden"), default=False
    )

    objects = MailboxQuerySet.as_manager()

    # Not a column: set by the selectors that annotate it (mailbox_get_for_user).
    user_role: str | None

    class Meta:
        ordering = ["display_name"]
        verbose_name = _("Postfach")
        verbose_name_plural = _("Postfächer")
        # The manager role (Leitung): the house's mailboxes, access, audit and dashboards, without being a
        # superuser. Checked through mailbox.permissions.is_manager.
        permissions = [("manage_house", _("Postfächer, Zugriffe und Audit des Hauses verwalten"))]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.address}>"


class Membership(models.Model):
    """A user or a group (ward) with a role in a mailbox. A user's role is the strongest of all that apply."""

    class Role(models.TextChoices):
        OBSERVER = "observer", _("Beobachter (nur lesen, keine Benachrichtigungen)")
        READER = "reader", _("Lesen")
        PROCESSOR = "processor", pgettext_lazy("mailbox role", "Bearbeiten")
        OWNER = "owner", _("Eigentümer")

    # Ordered by power; observers read like readers but are never notified.
    RANK: dict[str, int] = {Role.OBSERVER: 0, Role.READER: 1, Role.PROCESSOR: 2, Role.OWNER: 3}

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="mailbox_memberships"
    )
    role = models.CharField(_("Rolle"), max_length=20, choices=Role.choices, default=Role.PROCESSOR)
    # When and by whom the current role was granted (the access report's "seit wann, von wem"); set by the members
    # service. Null on rows from before this was recorded.
    granted_at = models.DateTimeField(_("erteilt am"), null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("erteilt von"),
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "user"], name="membership_unique_user"),
            models.UniqueConstraint(fields=["mailbox", "group"], name="membership_unique_group"),
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="membership_user_xor_group",
            ),
        ]
        verbose_name = _("Mitgliedschaft")
        verbose_name_plural = _("Mitgliedschaften")

    def __str__(self) -> str:
        return f"{self.user or self.group} @ {self.mailbox.address} ({self.role})"
