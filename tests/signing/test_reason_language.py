"""Why a draft was not signed is kept untranslated and shown in the reader's language.

The batch runs in a worker, in German; the physician and the assistant read the reason later, some with the portal
in English. So the draft, the batch and its items keep the msgid and its parameters (kimportal.texts), the audit
event too, and the pages translate. Rows written before keep their German sentence and show it as it is. The KIS
API answers in German, its documented language, whatever the request's language.
"""

from __future__ import annotations

import html

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import translation

from audit.models import AuditEvent
from signing.api.services import kis_client_create
from signing.models import BatchItem, ComfortActivation, ComfortUse, Draft, SignatureBatch
from signing.services.batch import Selected, batch_create
from signing.services.comfort import end_text
from signing.services.run import batch_end_unqueued, batch_run
from tests.signing.factories import DraftFactory
from tests.signing.kis import Api, submission

pytestmark = pytest.mark.django_db

FAILED_DE, FAILED_EN = "Fehler bei der Signaturerstellung.", "Error creating the signature."
UNQUEUED_DE = "Der Signaturdienst ist im Moment nicht erreichbar."
UNQUEUED_EN = "The signing service cannot be reached at the moment."


def _page(client, user, name: str, *args, language: str) -> str:
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _start(signer, workplace, drafts, django_capture_on_commit_callbacks) -> SignatureBatch:
    with django_capture_on_commit_callbacks(execute=False):
        return batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )


def _letters(n, signer, assistant, mailbox) -> list[Draft]:
    return [
        DraftFactory(
            author=assistant,
            signer=signer,
            mailbox=mailbox,
            content=f"Arztbrief Nr. {i}\nBefund unauffällig.\n".encode(),
            mime_type="text/plain",
            filename=f"brief-{i}.txt",
        )
        for i in range(n)
    ]


def test_a_document_the_konnektor_refused_says_why_in_the_readers_language(
    konnektor_sim, use_sim, signer, assistant, mailbox, sim_workplace, client, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    drafts = _letters(2, signer, assistant, mailbox)
    batch = _start(signer, sim_workplace, drafts, django_capture_on_commit_callbacks)
    bad = BatchItem.objects.get(batch=batch, draft=drafts[1])
    konnektor_sim.arm_fault("fail-request", request_id=bad.request_id, code=4123)
    with translation.override("de"):  # the worker's language
        batch_run(batch.pk)
    failed = Draft.objects.get(pk=drafts[1].pk)
    assert failed.state == Draft.State.FAILED and failed.last_error_code == 4123

    # The queue and the draft's page (Draft.last_error), the batch page (BatchItem.text).
    for language, shown, other in (("en", FAILED_EN, FAILED_DE), ("de", FAILED_DE, FAILED_EN)):
        for page in (
            _page(client, signer, "signing:queue", language=language),
            _page(client, assistant, "signing:draft-detail", failed.pk, language=language),
            _page(client, signer, "signing:batch", batch.pk, language=language),
        ):
            assert shown in page and other not in page

    # The audit trail keeps what gettext needs, in no language.
    event = AuditEvent.objects.get(action="signing.sign_failed", details__draft=failed.pk)
    assert event.details["text"] == {"msgid": FAILED_DE, "params": {}}


def test_a_batch_that_could_not_start_says_why_in_the_readers_language(
    physician, assistant, mailbox, workplace, client, django_capture_on_commit_callbacks
):
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(2)]
    batch = _start(physician, workplace, drafts, django_capture_on_commit_callbacks)
    with translation.override("de"):
        batch_end_unqueued(batch.pk)
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.FAILED

    # SignatureBatch.error_text on the batch page and the list; the not-signed items and drafts carry it too.
    for language, shown, other in (("en", UNQUEUED_EN, UNQUEUED_DE), ("de", UNQUEUED_DE, UNQUEUED_EN)):
        detail = _page(client, physician, "signing:batch", batch.pk, language=language)
        assert detail.count(shown) == 3 and other not in detail  # the batch's reason, and each item's
        listing = _page(client, physician, "signing:batches", language=language)
        assert shown in listing and other not in listing
        queue = _page(client, physician, "signing:queue", language=language)
        assert queue.count(shown) == 2 and other not in queue

    finished = AuditEvent.objects.get(action="signing.batch_finished")
    assert finished.details["text"]["msgid"].startswith(UNQUEUED_DE)


def test_a_reason_written_before_is_shown_as_it_was_written(physician, assistant, mailbox, workplace, client):
    legacy = "Timeout bei der PIN-Eingabe."
    draft = DraftFactory(
        author=assistant, signer=physician, mailbox=mailbox, state=Draft.State.FAILED, last_error=legacy
    )
    batch = SignatureBatch.objects.create(
        signer=physician, workplace=workplace, total=1, state="failed", error_code=4043, error_text=legacy
    )
    BatchItem.objects.create(
        batch=batch,
        draft=draft,
        position=0,
        request_id="r0",
        document_version=1,
        document_sha256=draft.sha256,
        state="failed",
        text=legacy,
    )
    assert legacy in _page(client, physician, "signing:queue", language="en")
    assert _page(client, physician, "signing:batch", batch.pk, language="en").count(legacy) == 2


def test_the_kis_api_gives_the_reason_in_german_to_an_english_request(manager, physician, assistant, mailbox):
    issued = kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[mailbox])
    api = Api(Client(), issued.token)
    assert api.submit(submission("KIS-1", mailbox=mailbox.address)).status_code == 201
    Draft.objects.update(state=Draft.State.FAILED, last_error={"msgid": FAILED_DE, "params": {}})
    api.client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    response = api.get("KIS-1", headers={"Accept-Language": "en"})
    assert response.status_code == 200
    assert response.json()["last_error"] == FAILED_DE


BEFORE = ("signing", "0009_notification_mailbox_id")


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_keep_their_german_sentence(physician, assistant, mailbox, workplace):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, state=Draft.State.FAILED)
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps
    sentence = "Timeout bei der PIN-Eingabe."
    old.get_model("signing", "Draft").objects.filter(pk=draft.pk).update(last_error=sentence)
    batch = old.get_model("signing", "SignatureBatch").objects.create(
        signer_id=physician.pk, workplace_id=workplace.pk, total=1, state="failed", error_text=sentence
    )
    item = old.get_model("signing", "BatchItem").objects.create(
        batch_id=batch.pk,
        draft_id=draft.pk,
        position=0,
        request_id="r0",
        document_version=1,
        document_sha256=draft.sha256,
        state="failed",
        text=sentence,
    )
    activation = old.get_model("signing", "ComfortActivation").objects.create(
        signer_id=physician.pk, workplace_id=workplace.pk, state="failed", error_text=sentence
    )
    use = old.get_model("signing", "ComfortUse").objects.create(
        batch_id=batch.pk, activation_id=activation.pk, fallback_text=sentence
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    with translation.override("en"):
        assert Draft.objects.get(pk=draft.pk).last_error_text == sentence
        assert SignatureBatch.objects.get(pk=batch.pk).error_shown == sentence
        assert BatchItem.objects.get(pk=item.pk).text_shown == sentence
        assert end_text(ComfortActivation.objects.get(pk=activation.pk)) == sentence
        assert ComfortUse.objects.get(pk=use.pk).fallback_shown == sentence


def test_the_admins_batch_page_shows_the_items_reason_readable(
    physician, assistant, mailbox, workplace, admin_client, django_capture_on_commit_callbacks
):
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox)]
    batch = _start(physician, workplace, drafts, django_capture_on_commit_callbacks)
    with translation.override("de"):
        batch_end_unqueued(batch.pk)
    admin_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    response = admin_client.get(reverse("admin:signing_signaturebatch_change", args=[batch.pk]))
    assert response.status_code == 200
    assert UNQUEUED_EN in html.unescape(response.content.decode())
