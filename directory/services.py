"""Writes to the local address book: favorites, usage counts, the daily refresh from the VZD."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from directory.clients.vzd import VzdError
from directory.entries import DirectoryEntry
from directory.models import Contact
from directory.selectors import directory_entries_for_addresses, directory_entry_for_address, unavailable_message
from kimportal.errors import PortalError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


class DirectoryEntryNotFound(PortalError):
    pass


class DirectoryUnavailable(PortalError):
    pass


def _copy_entry(contact: Contact, entry: DirectoryEntry, address: str) -> None:
    contact.vzd_uid = entry.uid
    contact.telematik_id = entry.telematik_id
    contact.display_name = entry.display_name[:255]
    contact.organization = entry.organization[:255]
    contact.address_line = entry.address_line[:255]
    contact.kind = entry.kind[:128]
    contact.specialties = entry.specialties
    contact.kim_version = entry.kim_version(address)
    contact.cert_status = entry.cert.status
    contact.snapshot = entry.snapshot()


def _lookup(address: str) -> DirectoryEntry:
    try:
        entry = directory_entry_for_address(address)
    except VzdError as exc:
        raise DirectoryUnavailable(unavailable_message(exc)) from exc
    if entry is None:
        message = _("Die KIM-Adresse %(address)s steht nicht im Verzeichnis.") % {"address": address}
        raise DirectoryEntryNotFound(message)
    return entry


@transaction.atomic
def contact_favorite_add(*, user: User, address: str) -> Contact:
    """Store a KIM address as favorite, with the VZD entry as it is now (looked up, never trusted from the form)."""
    address = address.strip().lower()
    entry = _lookup(address)
    contact, _created = Contact.objects.select_for_update().get_or_create(
        kim_address=address, defaults={"display_name": entry.display_name[:255], "created_by": user}
    )
    _copy_entry(contact, entry, address)
    contact.is_favorite = True
    contact.status = Contact.Status.OK
    contact.changed_fields = []
    contact.checked_at = timezone.now()
    contact.updated_by = user
    contact.save()
    return contact


@transaction.atomic
def contact_favorite_remove(*, user: User, address: str) -> Contact | None:
    contact = Contact.objects.select_for_update().filter(kim_address=address.strip().lower()).first()
    if contact is None:
        return None
    contact.is_favorite = False
    contact.updated_by = user
    contact.save(update_fields=["is_favorite", "updated_by", "updated_at"])
    return contact


@transaction.atomic
def contact_acknowledge(*, user: User, contact_id: int) -> Contact:
    """The user has seen the change: the current VZD data becomes the reference. A contact gone from the directory
    stays flagged (there is nothing current to take): "aktuell" would be untrue until the next refresh."""
    contact = Contact.objects.select_for_update().get(pk=contact_id)
    if contact.status == Contact.Status.VANISHED:
        return contact
    contact.status = Contact.Status.OK
    contact.changed_fields = []
    contact.updated_by = user
    contact.save(update_fields=["status", "changed_fields", "updated_by", "updated_at"])
    return contact


@transaction.atomic
def contact_remove(*, user: User, contact_id: int) -> bool:
    """Remove a contact gone from the directory: nobody can be reached there, and the list would flag it for good.
    A contact still in the directory is not removed here (it is one of the house's frequent recipients; taking it
    off the favourites is the star's job). True when it was removed; Contact.DoesNotExist when it is gone already
    (another tab). Sending to the address again (were it back) counts it anew."""
    contact = Contact.objects.select_for_update().get(pk=contact_id)
    if contact.status != Contact.Status.VANISHED:
        return False
    logger.info("contact %s removed by %s (gone from the directory)", contact.kim_address, user.pk)
    contact.delete()
    return True


@transaction.atomic
def contact_record_use(*, address: str, entry: DirectoryEntry | None = None, user: User | None = None) -> Contact:
    """Count a use of a recipient address (for "frequent contacts"). For the compose flow after sending."""
    address = address.strip().lower()
    name = entry.display_name[:255] if entry else address
    contact, created = Contact.objects.select_for_update().get_or_create(
        kim_address=address, defaults={"display_name": name, "created_by": user}
    )
    if entry is not None and (created or not contact.snapshot):
        _copy_entry(contact, entry, address)
    contact.use_count = F("use_count") + 1
    contact.last_used_at = timezone.now()
    contact.save()
    contact.refresh_from_db()
    return contact


def _diff(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


@dataclass
class RefreshReport:
    checked: int = 0
    changed: int = 0
    vanished: int = 0
    unchanged: int = 0


def contacts_refresh(*, now=None) -> RefreshReport:
    """Compare every contact with the VZD; flag changed and vanished ones (raises VzdError when down)."""
    now = now or timezone.now()
    contacts = list(Contact.objects.all())
    found = directory_entries_for_addresses([c.kim_address for c in contacts])
    report = RefreshReport(checked=len(contacts))
    for contact in contacts:
        entry = found.get(contact.kim_address)
        with transaction.atomic():
            current = Contact.objects.select_for_update().get(pk=contact.pk)
            if entry is None:
                current.status = Contact.Status.VANISHED
                report.vanished += 1
            else:
                # Never compared before (a recipient counted at sending, not looked up): the first copy is the
                # reference, nothing has changed yet.
                changed = _diff(current.snapshot, entry.snapshot()) if current.snapshot else []
                if changed:
                    # Keep what changed until a user acknowledges it; show the directory's current data.
                    current.changed_fields = sorted(set(current.changed_fields or []) | set(changed))
                    current.status = Contact.Status.CHANGED
                    report.changed += 1
                else:
                    if current.status == Contact.Status.VANISHED:
                        current.status = Contact.Status.CHANGED if current.changed_fields else Contact.Status.OK
                    report.unchanged += 1
                _copy_entry(current, entry, current.kim_address)
            current.checked_at = now
            current.save()
    logger.info("directory contacts refreshed: %s", report)
    return report
