"""KIM administration through the provider's Account Manager: what must outlive one request.

The Account Manager holds the truth about a KIM account (its out-of-office note, limits, status); the portal keeps
only what it needs to stay consistent with it: a password change until it is settled (so the portal's stored CM
password never differs from the provider's after a failed change) and a registration wizard's answers between its
steps. Secrets in both are encrypted at rest (mailbox.crypto) and wiped once no longer needed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from kimportal.texts import render
from mailbox import crypto
from mailbox.models import KimAccount, Mailbox


class PasswordChange(models.Model):
    """One change of a KIM account's password, from before the Account Manager is asked until it is settled.

    Written (with both passwords encrypted) before the request leaves, so a crash, a timeout or a failed save after
    the provider accepted it cannot lose the new password: an open change is settled by a login test at the CM with
    the new and the old password (operations.services.kimadmin.password_change_settle)."""

    class State(models.TextChoices):
        PENDING = "pending", _("wird ausgeführt")
        UNCERTAIN = "uncertain", _("Ausgang ungewiss")
        APPLIED = "applied", pgettext_lazy("Passwortänderung", "übernommen")
        REJECTED = "rejected", _("nicht geändert")

    OPEN = (State.PENDING, State.UNCERTAIN)

    account = models.ForeignKey(KimAccount, on_delete=models.CASCADE, related_name="password_changes")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    # Both wiped (set to "") once the change is settled: the portal's account then holds the valid one.
    new_password_encrypted = models.TextField(blank=True)
    old_password_encrypted = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    # Why it was refused or is uncertain, kept untranslated (kimportal.texts; a row from before keeps its German
    # sentence): settled by a worker or a colleague's visit, read later in the reader's language as outcome_text.
    outcome = models.JSONField(default=str, blank=True)

    class Meta:
        verbose_name = _("Passwortänderung")
        verbose_name_plural = _("Passwortänderungen")
        ordering = ["-requested_at"]
        constraints = [
            # One open change per account: a second one could not tell which password the CM holds.
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(state__in=["pending", "uncertain"]),
                name="operations_one_open_password_change",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.state}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN

    @property
    def outcome_text(self) -> str:
        return render(self.outcome)

    def new_password(self) -> str:
        return crypto.decrypt(self.new_password_encrypted) if self.new_password_encrypted else ""

    def old_password(self) -> str:
        return crypto.decrypt(self.old_password_encrypted) if self.old_password_encrypted else ""


class KimRegistration(models.Model):
    """The registration wizard for a new KIM address: the answers of its steps until the address is registered at
    the Account Manager and the portal's mailbox exists (then the secrets are wiped)."""

    class State(models.TextChoices):
        DRAFT = "draft", _("in Vorbereitung")
        REGISTERED = "registered", _("beim Anbieter registriert")
        DONE = "done", _("Postfach angelegt")
        ABANDONED = "abandoned", _("abgebrochen")

    class Step(models.IntegerChoices):
        ADDRESS = 1, _("Adresse und Registrierungscode")
        PASSWORD = 2, _("Passwort")
        VERSION = 3, _("KIM-Version")
        CONFIRM = 4, _("Prüfen und registrieren")

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT)
    step = models.PositiveSmallIntegerField(choices=Step.choices, default=Step.ADDRESS)
    address = models.EmailField(_("KIM-Adresse"), max_length=254)
    display_name = models.CharField(_("Anzeigename"), max_length=200)
    kind = models.CharField(_("Art"), max_length=20, choices=Mailbox.Kind.choices, default=Mailbox.Kind.FUNCTIONAL)
    owner_ids = models.JSONField(default=list)
    # The connection settings (CM, Konnektor context) are copied from this account of the house.
    template_account = models.ForeignKey(KimAccount, null=True, on_delete=models.SET_NULL, related_name="+")
    reference_id_encrypted = models.TextField(blank=True)
    initial_password_encrypted = models.TextField(blank=True)
    password_encrypted = models.TextField(blank=True)
    kim_version = models.CharField(max_length=8, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    mailbox = models.ForeignKey(Mailbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("KIM-Registrierung")
        verbose_name_plural = _("KIM-Registrierungen")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.address} ({self.state})"

    def set_secret(self, name: str, raw: str) -> None:
        setattr(self, f"{name}_encrypted", crypto.encrypt(raw) if raw else "")

    def get_secret(self, name: str) -> str:
        token: str = getattr(self, f"{name}_encrypted")
        return crypto.decrypt(token) if token else ""

    def wipe_secrets(self) -> None:
        self.reference_id_encrypted = ""
        self.initial_password_encrypted = ""
        self.password_encrypted = ""
