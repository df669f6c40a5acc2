"""Reads start from the user: author and signer see a draft, nobody else (managers neither: patient data)."""

from __future__ import annotations

import pytest

from signing import selectors
from signing.models import Draft
from tests.signing.factories import DraftFactory

pytestmark = pytest.mark.django_db


def test_visibility(assistant, physician, stranger, manager, mailbox):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    DraftFactory(mailbox=mailbox)  # another author's and signer's letter
    assert set(Draft.objects.visible_to(assistant)) == {draft}
    assert set(Draft.objects.visible_to(physician)) == {draft}
    assert set(Draft.objects.visible_to(stranger)) == set()
    assert set(Draft.objects.visible_to(manager)) == set()
    with pytest.raises(Draft.DoesNotExist):
        selectors.draft_get_for_user(stranger, draft.pk)


def test_queue_filters_and_sorts(physician, assistant, mailbox):
    a = DraftFactory(
        author=assistant, signer=physician, mailbox=mailbox, patient_reference="Bauer", document_type="eau"
    )
    b = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, patient_reference="Adler")
    DraftFactory(author=physician, signer=assistant, mailbox=mailbox)  # someone else signs it
    signed = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, state=Draft.State.SIGNED)
    queue = list(selectors.draft_list_for_user(physician, own_queue=True))
    assert set(queue) == {a, b}  # open drafts only, where the physician is the signer
    by_patient = selectors.draft_list_for_user(physician, selectors.DraftFilter(sort="patient"), own_queue=True)
    assert list(by_patient) == [b, a]
    eau = selectors.draft_list_for_user(physician, selectors.DraftFilter(document_type="eau"))
    assert list(eau) == [a]
    assert signed in selectors.draft_list_for_user(physician, selectors.DraftFilter(state="all"))
    assert list(selectors.draft_list_for_user(physician, selectors.DraftFilter(patient="adl"))) == [b]
