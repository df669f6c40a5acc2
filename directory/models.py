"""The local address book: favorites and frequent KIM recipients of this installation (one hospital).

Each contact keeps a snapshot of its VZD entry; the daily refresh (``directory_refresh_contacts``) compares it
with the directory and flags the contact as changed or vanished (gematik: refresh local copies daily).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from directory.certificates import STATE_LABELS

# The parts of a VZD entry a contact keeps (``DirectoryEntry.snapshot``), named for the "changed" flag.
FIELD_LABELS = {
    "telematik_id": _("Telematik-ID"),
    "display_name": _("Name"),
    "organization": _("Organisation"),
    "address": _("Anschrift"),
    "specialties": _("Fachrichtung"),
    "addresses": _("KIM-Adressen/Version"),
    "cert_status": _("Zertifikatsstatus"),
    "certs": _("Zertifikate"),
}


class Contact(models.Model):
    class Status(models.TextChoices):
        OK = "ok", _("aktuell")
        CHANGED = "changed", _("im Verzeichnis geändert")
        VANISHED = "vanished", _("nicht mehr im Verzeichnis")

    kim_address = models.CharField(_("KIM-Adresse"), max_length=254, unique=True)  # stored lower-case
    vzd_uid = models.CharField(max_length=64, blank=True)
    telematik_id = models.CharField(_("Telematik-ID"), max_length=128, blank=True)
    display_name = models.CharField(_("Name"), max_length=255)
    organization = models.CharField(_("Organisation"), max_length=255, blank=True)
    address_line = models.CharField(_("Anschrift"), max_length=255, blank=True)
    kind = models.CharField(_("Art"), max_length=128, blank=True)
    specialties = models.JSONField(default=list, blank=True)
    kim_version = models.CharField(_("KIM-Version"), max_length=8, blank=True)
    cert_status = models.CharField(max_length=16, blank=True)
    snapshot = models.JSONField(default=dict, blank=True)

    is_favorite = models.BooleanField(_("Favorit"), default=False)
    use_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    changed_fields = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    # Who changed the address book (searching the VZD itself is not recorded: it is no patient data).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Kontakt")
        verbose_name_plural = _("Kontakte")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kim_address=Lower("kim_address")), name="directory_contact_address_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.kim_address}>"

    @property
    def cert_label(self) -> str:
        return str(STATE_LABELS[self.cert_status]) if self.cert_status in STATE_LABELS else ""

    @property
    def changed_labels(self) -> list[str]:
        """What changed in the directory since a user last saw this contact, in words."""
        return [str(FIELD_LABELS.get(name, name)) for name in self.changed_fields or []]

    @property
    def large_messages(self) -> bool:
        return self.kim_version.endswith("+")
