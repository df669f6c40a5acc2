"""A message the CM lists but the portal could not fetch or store: tried again on its own, never deleted."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render
from mailbox.models.accounts import KimAccount


class FetchFailure(models.Model):
    """One message of one account that failed (RETR error or stall, cut off, unparseable, refused).

    The other messages of the round are fetched as usual; this one waits for ``next_try_at`` and
    stays on the Clientmodul. From SHOW_AFTER_TRIES failed tries on it is shown to the mailbox's
    owners and administrators. The row goes once the message is stored or the CM no longer lists it.
    """

    # Five tries (about 40 minutes with the backoff in services.fetch) before owners are told.
    SHOW_AFTER_TRIES = 5

    account = models.ForeignKey(KimAccount, on_delete=models.CASCADE, related_name="fetch_failures")
    # The key the message would be stored under (its UIDL, or UIDL~size for a reused UIDL).
    uidl = models.CharField(max_length=100)
    pop3_size = models.PositiveBigIntegerField(null=True, blank=True)
    tries = models.PositiveIntegerField(default=0)
    # Translated when shown (kimportal.texts), as KimAccount.status_message.
    last_error = models.JSONField(default=str, blank=True)
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)
    next_try_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("Nicht abrufbare Nachricht")
        verbose_name_plural = _("Nicht abrufbare Nachrichten")
        ordering = ["first_failed_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["account", "uidl"], name="fetch_failure_unique_uidl")]

    def __str__(self) -> str:
        return f"{self.uidl} ({self.tries})"

    @property
    def is_shown(self) -> bool:
        return self.tries >= self.SHOW_AFTER_TRIES

    @property
    def last_error_text(self) -> str:
        return render(self.last_error)
