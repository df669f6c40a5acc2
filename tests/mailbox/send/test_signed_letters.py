"""Signed letters leave through the outbox by themselves (KIMPORTAL_SIGNING_AUTO_SEND): signed at the simulated
Konnektor, sent through the simulated CM, fetched by the practice's portal with the signature intact."""

from __future__ import annotations

import pytest
from django.db import transaction

from mailbox.models import Membership, Message, OutgoingMessage
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver
from mailbox.storage import blob_get, blob_path
from signing.models import Draft, Signature
from signing.services.batch import Selected, batch_create
from signing.services.run import batch_run
from signing.services.send import signed_draft_send
from tests.fixtures.konnektor_sim import CT_ID, HBA_TELEMATIK_ID, MANDANT, WORKPLACE
from tests.mailbox.conftest import PRAXIS
from tests.mailbox.factories import MembershipFactory, UserFactory
from tests.signing.documents import make_pdf
from tests.signing.factories import DraftFactory, SignerCardFactory, WorkplaceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def konnektor(settings, tmp_path, konnektor_sim):
    ca = tmp_path / "qes-ca.pem"
    ca.write_bytes(konnektor_sim.qes_ca_pem)
    settings.KIMPORTAL_KONNEKTOR_URL = konnektor_sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MODE = konnektor_sim.mode
    settings.KIMPORTAL_KONNEKTOR_MANDANT = MANDANT
    settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = konnektor_sim.client_system_id
    settings.KIMPORTAL_KONNEKTOR_QES_CA = str(ca)
    settings.KIMPORTAL_SIGNING_AUTO_SEND = True
    return konnektor_sim


def _signed(sender, account, konnektor, **draft_fields) -> Draft:
    physician = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    MembershipFactory(mailbox=account.mailbox, user=physician)
    SignerCardFactory(user=physician, telematik_id=HBA_TELEMATIK_ID)
    workplace = WorkplaceFactory(workplace_id=WORKPLACE, ct_id=CT_ID)
    draft = DraftFactory(author=sender, signer=physician, mailbox=account.mailbox, recipients=[PRAXIS], **draft_fields)
    with transaction.atomic():
        batch = batch_create(
            signer=physician, workplace=workplace, selected=[Selected(draft.pk, draft.version, draft.sha256)]
        )
    batch_run(batch.pk)
    return Draft.objects.get(pk=draft.pk)


def test_a_signed_pdf_reaches_the_practice_signed_and_the_letter_follows_its_delivery(
    cm, account, praxis_account, sender, vzd, sent_tasks, konnektor
):
    draft = _signed(sender, account, konnektor, subject="Entlassbrief Weber", content=make_pdf("Brief Weber"))
    assert draft.state == Draft.State.SIGNED
    # The hand-over waits for the batch's commit, as a task (this test is the worker).
    assert ("signing.tasks.signing_send_signed", (draft.pk,)) in sent_tasks
    draft = signed_draft_send(draft_id=draft.pk)
    assert draft.state == Draft.State.SENT and draft.outgoing_id
    assert signed_draft_send(draft_id=draft.pk).outgoing_id == draft.outgoing_id  # never handed over twice

    outgoing = OutgoingMessage.objects.get(pk=draft.outgoing_id)
    assert (outgoing.author_id, outgoing.mailbox_id, outgoing.to) == (sender.pk, account.mailbox_id, [PRAXIS])
    assert outgoing.dienstkennung.startswith("Arztbrief;")
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT

    account_fetch(account_id=praxis_account.pk)
    received = Message.objects.get(mailbox=praxis_account.mailbox)
    signature = Signature.objects.get(draft=draft)
    (attachment,) = received.attachments.all()
    # The practice got exactly the signed PDF the portal checked (not the unsigned draft).
    assert blob_get(attachment.sha256) == blob_get(signature.sha256)
    assert received.subject == "Entlassbrief Weber"

    account_fetch(account_id=account.pk)  # the DSN
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED


def test_a_text_letter_goes_with_its_detached_signature(
    cm, account, praxis_account, sender, vzd, sent_tasks, konnektor
):
    text = b"Befundbericht\nEchokardiographie: LVEF 55 %.\n"
    draft = _signed(
        sender,
        account,
        konnektor,
        content=text,
        mime_type="text/plain",
        filename="befund.txt",
        document_type="befundbericht",
    )
    draft = signed_draft_send(draft_id=draft.pk)
    outgoing_deliver(outgoing_id=draft.outgoing_id)
    account_fetch(account_id=praxis_account.pk)
    received = Message.objects.get(mailbox=praxis_account.mailbox)
    names = {a.filename: blob_get(a.sha256) for a in received.attachments.all()}
    assert names["befund.txt"] == text
    assert names["befund.txt.p7s"] == blob_get(Signature.objects.get(draft=draft).sha256)


def test_a_recipient_the_directory_refuses_leaves_the_message_as_a_draft_with_the_reason(
    cm, account, sender, vzd, sent_tasks, konnektor
):
    unknown = "niemand@unbekannt.kim.telematik-test"
    draft = _signed(sender, account, konnektor)
    Draft.objects.filter(pk=draft.pk).update(recipients=[unknown])
    draft = signed_draft_send(draft_id=draft.pk)
    assert (
        draft.state == Draft.State.SIGNED
        and "Postausgang" in draft.last_error_text
        and unknown in draft.last_error_text
    )
    outgoing = OutgoingMessage.objects.get(pk=draft.outgoing_id)
    assert outgoing.state == OutgoingMessage.State.DRAFT  # in the author's outbox, to fix and send
    assert not cm.sent_messages()


def test_a_letter_whose_author_left_the_department_is_sent_by_its_signer(
    cm, account, praxis_account, sender, vzd, sent_tasks, konnektor
):
    """The author left the sending mailbox while the letter waited for its signature. The physician who signs it
    may send from that mailbox (a signer must): the signed letter leaves with them as its sender, instead of waiting
    for ever as "signiert – wartet auf Versand" for someone who can no longer send it (nobody could)."""
    physician = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    MembershipFactory(mailbox=account.mailbox, user=physician)
    SignerCardFactory(user=physician, telematik_id=HBA_TELEMATIK_ID)
    workplace = WorkplaceFactory(workplace_id=WORKPLACE, ct_id=CT_ID)
    draft = DraftFactory(
        author=sender, signer=physician, mailbox=account.mailbox, recipients=[PRAXIS], content=make_pdf("Brief")
    )
    Membership.objects.filter(user=sender, mailbox=account.mailbox).delete()
    with transaction.atomic():
        batch = batch_create(
            signer=physician, workplace=workplace, selected=[Selected(draft.pk, draft.version, draft.sha256)]
        )
    batch_run(batch.pk)
    draft = signed_draft_send(draft_id=draft.pk)
    assert (draft.state, draft.last_error_text) == (Draft.State.SENT, "")
    outgoing = OutgoingMessage.objects.get(pk=draft.outgoing_id)
    assert (outgoing.author_id, outgoing.mailbox_id) == (physician.pk, account.mailbox_id)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    account_fetch(account_id=praxis_account.pk)
    (attachment,) = Message.objects.get(mailbox=praxis_account.mailbox).attachments.all()
    assert blob_get(attachment.sha256) == blob_get(Signature.objects.get(draft=draft).sha256)


def test_a_hand_over_nobody_may_make_leaves_the_letter_signed_with_the_reason(account, sender, sent_tasks, konnektor):
    """Author and signer both left the sending mailbox before the signed letter was handed over: nothing is sent,
    the letter stays signed and says why (the refusal's rollback must not take the reason with it)."""
    draft = _signed(sender, account, konnektor)
    assert draft.state == Draft.State.SIGNED
    Membership.objects.filter(mailbox=account.mailbox, user_id__in=[sender.pk, draft.signer_id]).delete()
    draft = signed_draft_send(draft_id=draft.pk)
    assert draft.state == Draft.State.SIGNED and draft.outgoing_id is None
    assert draft.last_error_text.startswith("Nicht an den Postausgang übergeben:"), draft.last_error_text
    assert not OutgoingMessage.objects.exists()


def test_a_signature_gone_from_the_store_is_explained_in_german(account, sender, sent_tasks, konnektor):
    draft = _signed(sender, account, konnektor)
    signature = Signature.objects.get(draft=draft)
    blob_path(signature.sha256).unlink()
    draft = signed_draft_send(draft_id=draft.pk)
    assert draft.state == Draft.State.SIGNED and draft.outgoing_id is None
    assert draft.last_error_text == (
        "Nicht an den Postausgang übergeben: Das Dokument oder seine Signatur fehlt im Speicher oder ist beschädigt."
    ), draft.last_error_text
    assert signature.sha256 not in draft.last_error_text
