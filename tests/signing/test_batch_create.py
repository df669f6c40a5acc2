"""Starting a batch: what was shown is what gets signed; anything else refuses the whole batch and changes nothing."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from kimportal.errors import Conflict, NotAllowed, PortalError
from signing.models import BatchItem, Draft, SignatureBatch
from signing.services.batch import Selected, batch_create
from tests.signing.factories import DraftFactory, SignerCardFactory

pytestmark = pytest.mark.django_db


def _sel(*drafts: Draft) -> list[Selected]:
    return [Selected(d.pk, d.version, d.sha256) for d in drafts]


def test_batch_takes_the_drafts_and_queues_its_task_after_commit(
    physician, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(3)]
    with django_capture_on_commit_callbacks() as callbacks:
        batch = batch_create(signer=physician, workplace=workplace, selected=_sel(*drafts))
    assert batch.state == SignatureBatch.State.PREPARED and batch.total == 3 and batch.task_id
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNING}
    items = list(BatchItem.objects.filter(batch=batch).order_by("position"))
    assert [i.draft_id for i in items] == [d.pk for d in drafts]
    assert [(i.document_sha256, i.request_id) for i in items] == [(d.sha256, f"D{d.pk}-V1") for d in drafts]
    assert AuditEvent.objects.get(action="signing.batch_started").details["drafts"] == [d.pk for d in drafts]
    assert callbacks, "the task is sent only after commit"


def test_changed_since_shown_refuses_everything(physician, assistant, mailbox, workplace):
    shown = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    other = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    stale = Selected(shown.pk, shown.version, "0" * 64)
    with pytest.raises(Conflict) as caught:
        batch_create(signer=physician, workplace=workplace, selected=[stale, *_sel(other)])
    assert shown.subject in caught.value.message
    old_version = Selected(shown.pk, shown.version + 1, shown.sha256)
    with pytest.raises(Conflict):
        batch_create(signer=physician, workplace=workplace, selected=[old_version])
    assert not SignatureBatch.objects.exists()
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}


def test_only_the_intended_signer_with_an_ehba_may_sign(physician, assistant, mailbox, workplace):
    draft = DraftFactory(author=physician, signer=assistant, mailbox=mailbox)
    # The assistant is the intended signer but has no eHBA.
    with pytest.raises(NotAllowed) as caught:
        batch_create(signer=assistant, workplace=workplace, selected=_sel(draft))
    assert "kein eHBA" in caught.value.message
    # The physician has one but is not this draft's signer.
    with pytest.raises(NotAllowed):
        batch_create(signer=physician, workplace=workplace, selected=_sel(draft))
    SignerCardFactory(user=assistant)
    assert batch_create(signer=assistant, workplace=workplace, selected=_sel(draft)).total == 1


def test_one_running_batch_per_physician_and_no_double_signing(physician, assistant, mailbox, workplace):
    first, second = (DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(2))
    batch_create(signer=physician, workplace=workplace, selected=_sel(first))
    with pytest.raises(Conflict) as caught:
        batch_create(signer=physician, workplace=workplace, selected=_sel(second))
    assert "läuft bereits" in caught.value.message
    SignatureBatch.objects.update(state=SignatureBatch.State.DONE)
    with pytest.raises(Conflict):  # the first draft is still "wird signiert"
        batch_create(signer=physician, workplace=workplace, selected=_sel(first))


def test_empty_and_oversized_selections(physician, workplace, settings):
    with pytest.raises(PortalError):
        batch_create(signer=physician, workplace=workplace, selected=[])
    settings.KIMPORTAL_SIGNING_MAX_BATCH = 2
    with pytest.raises(PortalError) as caught:
        batch_create(signer=physician, workplace=workplace, selected=[Selected(n, 1, "a" * 64) for n in range(3)])
    assert "Höchstens 2" in caught.value.message


def test_a_batch_whose_worker_died_gives_its_drafts_back(physician, assistant, mailbox, workplace):
    from datetime import timedelta

    from django.utils import timezone

    from signing.services.run import batch_run, batches_recover_stale

    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(2)]
    stale = batch_create(signer=physician, workplace=workplace, selected=_sel(drafts[0]))
    long_ago = timezone.now() - timedelta(hours=2)
    SignatureBatch.objects.filter(pk=stale.pk).update(state="pin", started_at=long_ago, created_at=long_ago)
    assert batches_recover_stale() == 1
    stale.refresh_from_db()
    assert stale.state == "failed" and "unterbrochen" in stale.error_shown
    assert Draft.objects.get(pk=drafts[0].pk).state == Draft.State.DRAFT
    assert batches_recover_stale() == 0
    # A late task of the recovered batch does nothing.
    batch_run(stale.pk)
    assert SignatureBatch.objects.get(pk=stale.pk).state == "failed"
    # A batch that just started is not touched.
    now = timezone.now()
    SignatureBatch.objects.create(signer=physician, workplace=workplace, total=0, state="pin", started_at=now)
    assert batches_recover_stale() == 0


def test_a_draft_still_in_review_is_not_signed(physician, assistant, mailbox, workplace):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, review_state=Draft.Review.PENDING)
    with pytest.raises(Conflict) as caught:
        batch_create(signer=physician, workplace=workplace, selected=_sel(draft))
    assert "Noch nicht freigegeben" in caught.value.message
    # Approved, but not at this version (signing.services.review records the version approved): still refused.
    Draft.objects.filter(pk=draft.pk).update(review_state=Draft.Review.APPROVED)
    with pytest.raises(Conflict):
        batch_create(signer=physician, workplace=workplace, selected=_sel(draft))
    Draft.objects.filter(pk=draft.pk).update(approved_version=draft.version)
    draft.refresh_from_db()
    assert batch_create(signer=physician, workplace=workplace, selected=_sel(draft)).total == 1
