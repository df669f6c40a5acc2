"""Every change of a draft is a new version (who or which channel, when, which fields); earlier versions are
viewable — metadata and the document's bytes — and any two are compared (fields, and the text of text
documents); every look at a version's document is on the audit trail."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.models import Membership
from signing.models import DraftVersion
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create, draft_update
from tests.mailbox.factories import MembershipFactory, UserFactory
from tests.signing.documents import make_pdf

pytestmark = pytest.mark.django_db

OLD_TEXT = b"Sehr geehrte Kollegin,\nwir berichten ueber Frau Muster.\nDiagnose: Vorhofflimmern\nMfG\n"
NEW_TEXT = b"Sehr geehrte Kollegin,\nwir berichten ueber Frau Muster.\nDiagnose: Vorhofflattern\nMfG\n"


def _data(signer, mailbox, **overrides) -> DraftData:
    values = {
        "document_type": "befund",
        "patient_reference": "Muster, Erika 1950",
        "signer": signer,
        "mailbox": mailbox,
        "subject": "Befund Muster",
        "body": "",
        "recipients": ["praxis@praxis-test.kim.telematik-test"],
    }
    values.update(overrides)
    return DraftData(**values)


@pytest.fixture
def draft(assistant, physician, mailbox):
    first = draft_create(
        author=assistant, data=_data(physician, mailbox), document=document_check(OLD_TEXT, "befund.txt")
    )
    return draft_update(
        user=physician,
        draft=first,
        version=1,
        data=_data(physician, mailbox, subject="Befund Muster (korrigiert)"),
        document=document_check(NEW_TEXT, "befund.txt"),
        comment="Diagnose korrigiert",
    )


def test_each_change_is_a_version_with_who_when_what(draft, assistant, physician):
    v1, v2 = DraftVersion.objects.filter(draft=draft).order_by("number")
    assert (v1.number, v1.created_by_id, v1.changed, v1.subject) == (1, assistant.pk, [], "Befund Muster")
    assert (v2.number, v2.created_by_id, v2.comment) == (2, physician.pk, "Diagnose korrigiert")
    assert v2.changed == ["sha256", "subject"]
    assert v1.sha256 != v2.sha256 and v2.sha256 == draft.sha256
    assert v1.created_at <= v2.created_at
    # No change: no version.
    same = draft_update(
        user=physician, draft=draft, version=2, data=_data(physician, draft.mailbox, subject=draft.subject)
    )
    assert same.version == 2 and DraftVersion.objects.filter(draft=draft).count() == 2


def test_a_change_from_the_kis_names_its_channel(assistant, physician, mailbox):
    created = draft_create(
        author=assistant,
        data=_data(physician, mailbox),
        document=document_check(OLD_TEXT, "befund.txt"),
        source="kis",
        external_id="KIS-4711",
        via="KIS: Orbis Test",
    )
    assert (created.source, created.external_id) == ("kis", "KIS-4711")
    draft_update(
        user=assistant,
        draft=created,
        version=1,
        data=_data(physician, mailbox),
        document=document_check(NEW_TEXT, "befund.txt"),
        via="KIS: Orbis Test",
    )
    assert set(DraftVersion.objects.filter(draft=created).values_list("via", flat=True)) == {"KIS: Orbis Test"}
    changed = AuditEvent.objects.get(action="signing.draft_changed")
    assert changed.details["via"] == "KIS: Orbis Test"


def test_an_earlier_version_is_viewable_and_its_view_audited(client, draft, assistant):
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-version", args=[draft.pk, 1])).content.decode()
    assert "Vorhofflimmern" in page and "Befund Muster" in page and "Vorhofflattern" not in page
    assert AuditEvent.objects.filter(action="signing.document_viewed", details__version=1).count() == 1
    response = client.get(reverse("signing:draft-version-document", args=[draft.pk, 1]), {"download": "1"})
    assert b"".join(response.streaming_content) == OLD_TEXT
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    viewed = AuditEvent.objects.filter(action="signing.document_viewed", details__version=1)
    assert viewed.count() == 2 and viewed.filter(details__download=True).count() == 1
    history = client.get(reverse("signing:draft-versions", args=[draft.pk])).content.decode()
    assert 'id="version-1"' in history and 'id="version-2"' in history and "Diagnose korrigiert" in history


def test_compare_shows_changed_fields_and_the_text_diff(client, draft, physician):
    client.force_login(physician)
    page = client.get(reverse("signing:draft-compare", args=[draft.pk]), {"a": 2, "b": 1}).content.decode()
    assert "Fassung 1 und Fassung 2" in page
    assert "Vorhofflimmern</del>" in page and "Vorhofflattern</ins>" in page
    assert "ueber Frau Muster." in page  # context line
    # The subject and the document's digest are marked changed, nothing else (the size is the same).
    assert page.count('data-changed="1"') == 2
    viewed = AuditEvent.objects.filter(action="signing.document_viewed", actor_id=physician.pk)
    assert set(viewed.values_list("details__version", flat=True)) == {1, 2}


def test_compare_of_pdf_versions_says_replaced(client, assistant, physician, mailbox):
    d = draft_create(
        author=assistant, data=_data(physician, mailbox), document=document_check(make_pdf("Eins"), "b.pdf")
    )
    draft_update(
        user=assistant,
        draft=d,
        version=1,
        data=_data(physician, mailbox),
        document=document_check(make_pdf("Zwei"), "b.pdf"),
    )
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-compare", args=[d.pk]), {"a": 1, "b": 2}).content.decode()
    assert 'id="document-differs"' in page
    version_page = client.get(reverse("signing:draft-version", args=[d.pk, 1])).content.decode()
    assert reverse("signing:draft-version-document", args=[d.pk, 1]) in version_page


def test_strangers_and_bad_input_get_404(client, draft, stranger, mailbox):
    client.force_login(stranger)
    for url in (
        reverse("signing:draft-versions", args=[draft.pk]),
        reverse("signing:draft-version", args=[draft.pk, 1]),
        reverse("signing:draft-version-document", args=[draft.pk, 1]),
        reverse("signing:draft-compare", args=[draft.pk]) + "?a=1&b=2",
    ):
        assert client.get(url).status_code == 404, url
    # A member of the mailbox who is neither author, signer nor reviewer sees nothing either.
    member = UserFactory(username="kollege")
    MembershipFactory(mailbox=mailbox, user=member, role=Membership.Role.PROCESSOR)
    client.force_login(member)
    assert client.get(reverse("signing:draft-version", args=[draft.pk, 1])).status_code == 404
    assert not AuditEvent.objects.filter(
        action="signing.document_viewed", actor_id__in=[stranger.pk, member.pk]
    ).exists()
    client.force_login(draft.author)
    assert client.get(reverse("signing:draft-version", args=[draft.pk, 9])).status_code == 404
    assert client.get(reverse("signing:draft-compare", args=[draft.pk]), {"a": "x", "b": "1"}).status_code == 404
    assert client.get(reverse("signing:draft-compare", args=[draft.pk]), {"a": "1"}).status_code == 404


def test_the_detail_page_links_the_history(client, draft, assistant):
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert reverse("signing:draft-versions", args=[draft.pk]) in page


def test_documents_too_big_to_diff_are_not_diffed(client, draft, assistant, monkeypatch):
    monkeypatch.setattr("signing.views.review.DIFF_LIMIT", 10)
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-compare", args=[draft.pk]), {"a": 1, "b": 2}).content.decode()
    assert "zu groß für einen Textvergleich" in page and 'id="text-diff"' not in page
    # Nothing was read, so nothing is on the trail as viewed.
    assert not AuditEvent.objects.filter(action="signing.document_viewed", actor_id=assistant.pk).exists()
