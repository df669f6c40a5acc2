"""The queue page's notice says what a changed draft wants from this user: a review ("um Ihre Prüfung gebeten"),
a signature ("wartet … auf Ihre Signatur") only when it may be signed, and to the signer of a draft still in
review that it is not approved yet."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission

from mailbox.models import Membership
from signing.consumers import QueueConsumer
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.review import review_approve
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory
from tests.signing.test_consumers import _close_async_connection, _open, async_db  # noqa: F401 (the fixture)

REVIEW = "wird um Ihre Prüfung gebeten"
SIGN = "auf Ihre Signatur"
NOT_YET = "noch nicht freigegeben"


async def _notice(communicator: WebsocketCommunicator) -> str:
    """The next notice frame (the bell's badge may come before or after it)."""
    for _ in range(5):
        frame = await communicator.receive_from(timeout=5)
        if 'id="queue-notice"' in frame:
            return frame
    raise AssertionError("no notice")


async def _drain(communicator: WebsocketCommunicator) -> None:
    """Read what the last step sent (creating a draft with a review broadcasts more than once)."""
    while not await communicator.receive_nothing(timeout=0.5):
        await communicator.receive_from(timeout=5)


def _people():
    box = MailboxFactory()
    assistant, physician, senior = UserFactory(), UserFactory(), UserFactory()
    for user in (assistant, physician, senior):
        MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    for user in (physician, senior):
        SignerCardFactory(user=user)
    review = Permission.objects.get(content_type__app_label="signing", codename="review_draft")
    senior.user_permissions.add(review)
    return box, assistant, physician, senior, review


def _create(box, assistant, signer, reviewer=None):
    data = DraftData(
        document_type="eau",
        patient_reference="Muster",
        signer=signer,
        mailbox=box,
        subject="AU Muster",
        recipients=["kasse@kasse-test.kim.telematik-test"],
    )
    return draft_create(author=assistant, data=data, document=document_check(b"AU\n", "au.txt"), reviewer=reviewer)


@async_db
async def test_the_reviewer_is_asked_to_review_and_the_signer_told_it_is_not_approved_yet():
    box, assistant, physician, senior, _perm = await database_sync_to_async(_people)()
    reviewer_page = await _open(QueueConsumer, senior)
    signer_page = await _open(QueueConsumer, physician)

    draft = await database_sync_to_async(_create)(box, assistant, physician, senior)
    html = await _notice(reviewer_page)
    assert REVIEW in html and SIGN not in html and str(draft.pk) in html
    html = await _notice(signer_page)
    assert NOT_YET in html and "wartet neu oder geändert auf Ihre Signatur" not in html and REVIEW not in html

    # Approved: now the signer is asked to sign.
    await _drain(signer_page)
    await database_sync_to_async(lambda: review_approve(user=senior, draft=draft, version=draft.version))()
    html = await _notice(signer_page)
    assert "1 Entwurf wartet neu oder geändert auf Ihre Signatur." in html and NOT_YET not in html
    await reviewer_page.disconnect()
    await signer_page.disconnect()


@async_db
async def test_a_signer_who_reviews_too_is_first_asked_to_review():
    box, assistant, physician, _senior, review = await database_sync_to_async(_people)()
    await database_sync_to_async(lambda: physician.user_permissions.add(review))()
    page = await _open(QueueConsumer, physician)
    await database_sync_to_async(_create)(box, assistant, physician, physician)
    html = await _notice(page)
    assert "Für 1 Entwurf (neu oder geändert) wird um Ihre Prüfung gebeten." in html and SIGN not in html
    await page.disconnect()


@async_db
async def test_a_draft_without_review_waits_for_the_signature():
    box, assistant, physician, _senior, _perm = await database_sync_to_async(_people)()
    page = await _open(QueueConsumer, physician)
    await database_sync_to_async(_create)(box, assistant, physician)
    html = await _notice(page)
    assert "1 Entwurf wartet neu oder geändert auf Ihre Signatur." in html and REVIEW not in html
    await page.disconnect()
