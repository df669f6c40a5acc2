"""Who signs with which card, and where: the physicians' eHBAs and the workstations with a PIN pad."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class SignerCard(models.Model):
    """A user's eHBA, set by a manager: found among the Konnektor's cards by Telematik-ID (read from the card's
    QES certificate) or by ICCSN. Without one a user cannot sign."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="signer_card", verbose_name=_("Person")
    )
    telematik_id = models.CharField(_("Telematik-ID"), max_length=128, blank=True)
    iccsn = models.CharField(_("ICCSN"), max_length=20, blank=True)
    # Context.UserId of this physician's HBA calls: stable and opaque (not the login name).
    konnektor_user_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("eHBA-Zuordnung")
        verbose_name_plural = _("eHBA-Zuordnungen")
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(telematik_id="") | ~models.Q(iccsn=""), name="signercard_identifies_a_card"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ↔ {self.telematik_id or self.iccsn}"


class Workplace(models.Model):
    """A workstation as the Konnektor knows it (WorkplaceId) with the card terminal whose PIN pad serves it.

    The physician's browser remembers its choice (a cookie): the PIN is typed where the physician sits."""

    workplace_id = models.CharField(_("Arbeitsplatz-ID"), max_length=64, unique=True)
    label = models.CharField(_("Bezeichnung"), max_length=100)
    ct_id = models.CharField(_("Kartenterminal-ID"), max_length=64, blank=True)
    is_active = models.BooleanField(_("aktiv"), default=True)

    class Meta:
        ordering = ["label"]
        verbose_name = _("Arbeitsplatz")
        verbose_name_plural = _("Arbeitsplätze")

    def __str__(self) -> str:
        return f"{self.label} ({self.workplace_id})"
