"""Local address book: favorites with who changed them, usage counts, daily refresh flags (real slapd)."""

from __future__ import annotations

import ldap3
import pytest

from directory.models import Contact
from directory.services import (
    DirectoryEntryNotFound,
    DirectoryUnavailable,
    contact_acknowledge,
    contact_favorite_add,
    contact_favorite_remove,
    contact_record_use,
    contacts_refresh,
)
from directory.tasks import directory_refresh_contacts

pytestmark = [pytest.mark.django_db, pytest.mark.slapd]
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"


def test_favorite_add_stores_the_vzd_entry_and_who_did_it(vzd, user, other_user):
    contact = contact_favorite_add(user=user, address=PRAXIS.upper())
    assert contact.kim_address == PRAXIS
    assert contact.display_name == "Praxis Dr. Müller"
    assert contact.kim_version == "1.5+" and contact.large_messages
    assert contact.cert_status == "valid"
    assert contact.created_by == user and contact.updated_by == user
    assert contact.is_favorite and contact.status == Contact.Status.OK

    contact = contact_favorite_remove(user=other_user, address=PRAXIS)
    assert not contact.is_favorite
    assert contact.created_by == user and contact.updated_by == other_user


def test_favorite_add_unknown_address(vzd, user):
    with pytest.raises(DirectoryEntryNotFound):
        contact_favorite_add(user=user, address="niemand@nirgends.kim.telematik-test")
    assert not Contact.objects.exists()


def test_favorite_add_directory_down(vzd_down, user):
    with pytest.raises(DirectoryUnavailable):
        contact_favorite_add(user=user, address=PRAXIS)


def test_record_use_counts(vzd, user):
    contact_record_use(address=PRAXIS, user=user)
    contact = contact_record_use(address=PRAXIS, user=user)
    assert contact.use_count == 2
    assert contact.last_used_at is not None


def test_refresh_flags_changed_and_vanished_entries(vzd, vzd_admin, user, extra_entry):
    dn, address = extra_entry
    contact_favorite_add(user=user, address=PRAXIS)
    contact_favorite_add(user=user, address=address)

    report = contacts_refresh()
    assert (report.checked, report.changed, report.vanished) == (2, 0, 0)
    assert set(Contact.objects.values_list("status", flat=True)) == {"ok"}

    assert vzd_admin.modify(
        dn,
        {
            "displayName": [(ldap3.MODIFY_REPLACE, ["Praxis Refresh Neu"])],
            "komLeData": [(ldap3.MODIFY_REPLACE, [f"1.5+,{address}"])],
        },
    ), vzd_admin.result
    report = contacts_refresh()
    assert (report.changed, report.vanished) == (1, 0)
    contact = Contact.objects.get(kim_address=address)
    assert contact.status == Contact.Status.CHANGED
    assert contact.changed_fields == ["addresses", "display_name"]
    assert contact.display_name == "Praxis Refresh Neu" and contact.kim_version == "1.5+"
    assert Contact.objects.get(kim_address=PRAXIS).status == Contact.Status.OK

    # still changed on the next run until someone acknowledges it
    contacts_refresh()
    assert Contact.objects.get(kim_address=address).status == Contact.Status.CHANGED
    contact_acknowledge(user=user, contact_id=contact.pk)
    contacts_refresh()
    assert Contact.objects.get(kim_address=address).status == Contact.Status.OK

    assert vzd_admin.delete(dn), vzd_admin.result
    result = directory_refresh_contacts()  # the Celery task body, run directly
    assert result == {"checked": 2, "changed": 0, "vanished": 1}
    contact = Contact.objects.get(kim_address=address)
    assert contact.status == Contact.Status.VANISHED
    assert contact.checked_at is not None


def test_refresh_takes_a_counted_recipient_as_it_is_not_as_changed(vzd, user):
    # Sending counts a recipient without looking it up: the first refresh is the first copy, not a change.
    contact_record_use(address=PRAXIS, user=user)
    report = contacts_refresh()
    assert (report.changed, report.unchanged) == (0, 1)
    contact = Contact.objects.get(kim_address=PRAXIS)
    assert contact.status == Contact.Status.OK and contact.changed_fields == []
    assert contact.display_name == "Praxis Dr. Müller" and contact.kim_version == "1.5+" and contact.snapshot
    assert contact.use_count == 1
    assert contacts_refresh().changed == 0


def test_a_vanished_contact_stays_flagged_when_acknowledged(vzd, vzd_admin, user, extra_entry):
    dn, address = extra_entry
    contact = contact_favorite_add(user=user, address=address)
    assert vzd_admin.delete(dn), vzd_admin.result
    contacts_refresh()
    contact_acknowledge(user=user, contact_id=contact.pk)
    contact.refresh_from_db()
    assert contact.status == Contact.Status.VANISHED  # not "aktuell": it is not in the directory


def test_refresh_when_directory_down_raises_for_retry(vzd_down, user):
    Contact.objects.create(kim_address=PRAXIS, display_name="x", snapshot={"display_name": "x"})
    from directory.clients.vzd import VzdError

    with pytest.raises(VzdError):
        contacts_refresh()
    assert Contact.objects.get().status == Contact.Status.OK
