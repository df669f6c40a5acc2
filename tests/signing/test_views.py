"""The signing pages: queue and list, the draft form's errors, the document shown inline (and audited), managers'
pages."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from signing.models import Draft, SignerCard, Workplace
from tests.signing.documents import LETTER_TEXT, make_pdf
from tests.signing.factories import DraftFactory

pytestmark = pytest.mark.django_db


def test_queue_shows_the_physicians_drafts_selectable(
    client, physician, assistant, mailbox, workplace, django_assert_max_num_queries
):
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(20)]
    client.force_login(physician)
    client.cookies["kimportal_signing_workplace"] = str(workplace.pk)
    with django_assert_max_num_queries(12):
        html = client.get(reverse("signing:queue")).content.decode()
    for d in drafts:
        assert f'value="{d.pk}:{d.version}:{d.sha256}"' in html
    assert 'id="select-all"' in html and 'id="sign-button"' in html
    assert f'<option value="{workplace.pk}" selected>' in html


def test_without_ehba_the_sign_button_says_why(client, assistant, physician, mailbox):
    DraftFactory(author=physician, signer=assistant, mailbox=mailbox)
    client.force_login(assistant)
    html = client.get(reverse("signing:queue")).content.decode()
    assert "kein eHBA zugeordnet" in html and "disabled" in html
    assert 'class="draft-select"' not in html


def test_central_list_filters_by_author_for_the_author(client, assistant, physician, mailbox):
    mine = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, subject="Brief A")
    DraftFactory(mailbox=mailbox, subject="Fremder Brief")
    client.force_login(assistant)
    html = client.get(reverse("signing:drafts")).content.decode()
    assert "Brief A" in html and "Fremder Brief" not in html
    # The assistant has no eHBA: the list shows, nothing is selectable.
    assert f'value="{mine.pk}:' not in html
    fragment = client.get(
        reverse("signing:drafts"), {"patient": "nobody"}, headers={"HX-Request": "true", "HX-Target": "draft-list"}
    )
    assert fragment.content.decode().lstrip().startswith('<div id="draft-list"')
    assert "Brief A" not in fragment.content.decode()


def _post_data(physician, mailbox, **extra):
    data = {
        "document_type": "earztbrief",
        "patient_reference": "Muster, Erika",
        "signer": physician.pk,
        "mailbox": mailbox.pk,
        "recipients": "praxis@praxis-test.kim.telematik-test",
        "subject": "Entlassbrief",
        "body": "",
    }
    data.update(extra)
    return data


def test_create_form_stores_a_pdf(client, assistant, physician, mailbox):
    client.force_login(assistant)
    upload = SimpleUploadedFile("brief.pdf", make_pdf(), content_type="application/pdf")
    response = client.post(reverse("signing:draft-create"), {**_post_data(physician, mailbox), "document": upload})
    draft = Draft.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("signing:draft-detail", args=[draft.pk])
    assert (draft.author, draft.signer, draft.mime_type) == (assistant, physician, "application/pdf")


@pytest.mark.parametrize(
    ("document", "extra", "message"),
    [
        (("brief.pdf", b"no pdf"), {}, "kein PDF-Dokument"),
        (("brief.txt", b"Brief"), {"recipients": "keine adresse"}, "Keine gültige KIM-Adresse"),
        (None, {}, "Dieses Feld ist zwingend erforderlich."),
        (("brief.txt", b"Brief"), {"signer": "0"}, "kann nicht als Unterzeichner gewählt werden"),
    ],
)
def test_create_form_errors_are_german_and_nothing_is_stored(
    client, assistant, physician, mailbox, document, extra, message
):
    client.force_login(assistant)
    data = _post_data(physician, mailbox, **extra)
    if document:
        data["document"] = SimpleUploadedFile(document[0], document[1])
    response = client.post(reverse("signing:draft-create"), data)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Draft.objects.exists()


def test_create_form_refuses_a_mailbox_the_author_may_not_use(client, assistant, physician):
    from tests.mailbox.factories import MailboxFactory

    client.force_login(assistant)
    foreign = MailboxFactory()
    upload = SimpleUploadedFile("brief.txt", LETTER_TEXT)
    response = client.post(reverse("signing:draft-create"), {**_post_data(physician, foreign), "document": upload})
    assert response.status_code == 422 and not Draft.objects.exists()


def test_text_document_is_shown_escaped_and_every_view_is_audited(client, assistant, physician, mailbox):
    draft = DraftFactory(
        author=assistant,
        signer=physician,
        mailbox=mailbox,
        content=LETTER_TEXT,
        mime_type="text/plain",
        filename="brief.txt",
    )
    client.force_login(physician)
    html = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert "Frau Muster &lt;geb. 1950&gt; &amp; ihre" in html
    assert "<geb. 1950>" not in html
    client.get(reverse("signing:draft-detail", args=[draft.pk]))
    views = AuditEvent.objects.filter(action="signing.document_viewed", actor_id=physician.pk)
    assert views.count() == 2 and views.first().details["draft"] == draft.pk


def test_pdf_is_shown_by_the_vendored_viewer_and_its_bytes_are_audited(client, assistant, physician, mailbox):
    pdf = make_pdf("Befund")
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, content=pdf)
    client.force_login(physician)
    html = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert 'id="pdf-viewer"' in html and "vendor/pdfjs/pdf.min.mjs" in html and 'type="module"' in html
    assert f"?v={draft.version}" in html
    response = client.get(reverse("signing:draft-document", args=[draft.pk]), {"v": draft.version})
    assert response.status_code == 200 and b"".join(response.streaming_content) == pdf
    assert response["Content-Type"] == "application/pdf"
    assert AuditEvent.objects.filter(action="signing.document_viewed", actor_id=physician.pk).count() == 1
    # A page showing an older version gets no other document than it names.
    stale = client.get(reverse("signing:draft-document", args=[draft.pk]), {"v": draft.version + 1})
    assert stale.status_code == 409


def test_sign_form_on_the_detail_page_carries_version_and_digest(client, assistant, physician, mailbox, workplace):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    client.force_login(physician)
    html = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert f'value="{draft.pk}:{draft.version}:{draft.sha256}"' in html
    client.force_login(assistant)
    html = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert "Nur die vorgesehene Unterzeichnerin" in html and 'id="sign-one-form"' not in html


def test_batch_start_redirects_to_the_live_page_and_remembers_the_workplace(
    client, physician, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(2)]
    client.force_login(physician)
    with django_capture_on_commit_callbacks():
        response = client.post(
            reverse("signing:batch-start"),
            {"workplace": workplace.pk, "draft": [f"{d.pk}:{d.version}:{d.sha256}" for d in drafts]},
        )
    batch = physician.signature_batches.get()
    assert response.status_code == 302 and response["Location"] == reverse("signing:batch", args=[batch.pk])
    assert response.cookies["kimportal_signing_workplace"].value == str(workplace.pk)
    page = client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    assert 'id="batch-status"' in page and 'ws-connect="/ws/signing/batch/' in page


def test_batch_start_errors_go_back_with_a_message(client, physician, assistant, mailbox, workplace):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    client.force_login(physician)
    response = client.post(
        reverse("signing:batch-start"),
        {"workplace": workplace.pk, "draft": f"{draft.pk}:{draft.version + 1}:{draft.sha256}", "next": "/signatur/"},
        follow=True,
    )
    assert "Geändert, seit Sie die Liste geladen haben" in response.content.decode()
    assert not physician.signature_batches.exists()


def test_managers_map_cards_and_workplaces(client, manager, assistant):
    client.force_login(manager)
    response = client.post(
        reverse("signing:manage-cards"), {"username": "assistenz", "telematik_id": "1-HBA-X", "iccsn": ""}
    )
    assert response.status_code == 302
    assert SignerCard.objects.get(user=assistant).telematik_id == "1-HBA-X"
    bad = client.post(reverse("signing:manage-cards"), {"username": "assistenz", "telematik_id": "", "iccsn": "12"})
    assert bad.status_code == 422 and "Die ICCSN besteht aus 20 Ziffern." in bad.content.decode()
    response = client.post(
        reverse("signing:manage-workplaces"),
        {"workplace_id": "AP-7", "label": "Station 7", "ct_id": "CT-7", "is_active": "on"},
    )
    assert response.status_code == 302 and Workplace.objects.get(workplace_id="AP-7").ct_id == "CT-7"
    assert AuditEvent.objects.filter(action__in=["signing.card_set", "signing.workplace_saved"]).count() == 2


def test_managers_pages_are_404_for_everyone_else(client, physician):
    client.force_login(physician)
    for name in ("manage-cards", "manage-workplaces"):
        assert client.get(reverse(f"signing:{name}")).status_code == 404
        assert client.post(reverse(f"signing:{name}"), {}).status_code == 404


def test_edit_form_changes_the_draft_and_refuses_a_stale_version(client, assistant, physician, mailbox):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, subject="Alt")
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-edit", args=[draft.pk])).content.decode()
    assert 'name="version" value="1"' in page
    data = {**_post_data(physician, mailbox, subject="Neu"), "version": 1}
    response = client.post(reverse("signing:draft-edit", args=[draft.pk]), data)
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.subject, draft.version) == ("Neu", 2)
    stale = client.post(reverse("signing:draft-edit", args=[draft.pk]), {**data, "subject": "Zu spät"})
    assert stale.status_code == 409 and "inzwischen geändert" in stale.content.decode()
    assert Draft.objects.get(pk=draft.pk).subject == "Neu"


def test_a_draft_being_signed_cannot_be_edited(client, assistant, physician, mailbox):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, state=Draft.State.SIGNING)
    client.force_login(assistant)
    response = client.get(reverse("signing:draft-edit", args=[draft.pk]), follow=True)
    assert "kann nicht mehr geändert werden" in response.content.decode()
    data = {**_post_data(physician, mailbox, subject="x"), "version": 1}
    client.post(reverse("signing:draft-edit", args=[draft.pk]), data)
    assert Draft.objects.get(pk=draft.pk).subject == draft.subject


def test_batch_page_shows_the_summary_after_reload(client, physician, assistant, mailbox, workplace):
    from signing.models import BatchItem, SignatureBatch

    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(3)]
    batch = SignatureBatch.objects.create(
        signer=physician,
        workplace=workplace,
        total=3,
        state="failed",
        job_number="XYZ-042",
        signed_count=1,
        error_code=4043,
        error_text="Timeout bei der PIN-Eingabe.",
    )
    states = ["signed", "failed", "not_signed"]
    for n, (d, state) in enumerate(zip(drafts, states, strict=True)):
        BatchItem.objects.create(
            batch=batch,
            draft=d,
            position=n,
            request_id=f"r{n}",
            document_version=1,
            document_sha256=d.sha256,
            state=state,
            text="Fehler bei Signaturerstellung." if state == "failed" else "",
        )
    client.force_login(physician)
    html = client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    assert 'id="batch-summary"' in html and "#XYZ-042" in html and "Timeout bei der PIN-Eingabe." in html
    assert "1 Dokument signiert" in html and "1 nicht signiert" in html and "Fehler bei Signaturerstellung." in html
    listing = client.get(reverse("signing:batches")).content.decode()
    assert f'id="batch-{batch.pk}"' in listing and "#XYZ-042" in listing


def test_cancel_by_htmx_answers_with_the_status_block(client, physician, workplace):
    from signing.models import SignatureBatch

    # Running (a worker took it): the cancel is a request the worker acts on.
    now = timezone.now()
    batch = SignatureBatch.objects.create(
        signer=physician, workplace=workplace, total=1, state="pin", started_at=now, heartbeat_at=now
    )
    client.force_login(physician)
    response = client.post(reverse("signing:batch-cancel", args=[batch.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="batch-status"')
    assert "Abbruch angefordert" in response.content.decode()
    assert SignatureBatch.objects.get(pk=batch.pk).cancel_requested_at is not None
    assert AuditEvent.objects.filter(action="signing.batch_cancel_requested").count() == 1


def test_signing_without_a_workplace_asks_for_it(client, physician, assistant, mailbox):
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    client.force_login(physician)
    response = client.post(
        reverse("signing:batch-start"), {"draft": f"{draft.pk}:{draft.version}:{draft.sha256}"}, follow=True
    )
    assert "Bitte wählen Sie Ihren Arbeitsplatz" in response.content.decode()
    assert not physician.signature_batches.exists()


def test_the_form_says_when_the_author_may_send_from_no_mailbox(client, stranger, physician):
    client.force_login(stranger)
    assert 'id="no-mailbox"' in client.get(reverse("signing:draft-create")).content.decode()


def test_a_sent_letter_shows_its_delivery_not_the_outbox(client, physician, assistant, mailbox):
    """A signed letter handed to the outbox says how far it got ("zugestellt"), in the list and on its page — not
    "im Postausgang" for ever."""
    from mailbox.models import OutgoingMessage

    outgoing = OutgoingMessage.objects.create(
        mailbox=mailbox, author=assistant, subject="Entlassbrief", state=OutgoingMessage.State.DELIVERED
    )
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, state=Draft.State.SENT, outgoing=outgoing)
    client.force_login(assistant)
    listing = client.get(reverse("signing:drafts"), {"state": "all"}).content.decode()
    page = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    for html in (listing, page):
        assert "signiert – zugestellt" in html
        assert "im Postausgang</span>" not in html  # (the state filter still offers it as a choice)
