"""The send path's pages: who may compose, autosave and its conflict guard, typed addresses, pre-flight errors,
attachments, replies, the sent message's timeline and the uncertain decision. Permissions per route are also in
the walker (test_permissions.py); here the forms, errors and what each page shows."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from mailbox.forms_compose import MAX_BODY
from mailbox.models import Membership, OutgoingAttachment, OutgoingMessage, OutgoingRecipient
from mailbox.services import members
from mailbox.services.ingest import message_ingest
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tisim.vzd.slapd import free_port

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}
PRAXIS = "praxis@praxis-test.kim.telematik-test"


@pytest.fixture(autouse=True)
def _no_directory(settings):
    # Nothing listens here: the directory is "down" unless a test says otherwise.
    settings.KIMPORTAL_VZD_URL = f"ldap://127.0.0.1:{free_port()}"
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 1.0


@pytest.fixture
def box():
    return MailboxFactory(display_name="Station Kardiologie")


@pytest.fixture
def writer(box):
    user = UserFactory(username="station")
    MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    return user


@pytest.fixture
def draft(box, writer):
    return OutgoingMessage.objects.create(mailbox=box, author=writer, subject="Rückfrage", to=[PRAXIS])


def test_compose_creates_a_draft_in_a_mailbox_the_user_may_send_from(client, box, writer):
    client.force_login(writer)
    page = client.get(reverse("mailbox:compose"))
    assert page.status_code == 200
    assert "Station Kardiologie" in page.content.decode()
    response = client.post(reverse("mailbox:compose"), {"mailbox": box.pk})
    draft = OutgoingMessage.objects.get(author=writer)
    assert response["Location"] == reverse("mailbox:draft-edit", args=[draft.pk])
    assert draft.state == OutgoingMessage.State.DRAFT and draft.mailbox == box
    html = client.get(response["Location"]).content.decode()
    assert 'id="draft-form"' in html and "Entwürfe werden automatisch gespeichert." in html
    assert "KIM-Mail;Default;V1.0" in html and "Arztbrief;VHitG-Versand;V1.2" in html
    # The browser holds the text to what the form takes: a 20 MB paste cannot turn every save into a refusal.
    assert f'<textarea name="body" id="id_body" rows="14" maxlength="{MAX_BODY}">' in html


def test_readers_may_not_compose_and_foreign_mailboxes_are_404(client, box):
    reader = UserFactory(username="leser")
    MembershipFactory(mailbox=box, user=reader, role=Membership.Role.READER)
    client.force_login(reader)
    assert client.get(reverse("mailbox:compose")).status_code == 403
    writer = UserFactory(username="w2")
    MembershipFactory(mailbox=MailboxFactory(), user=writer, role=Membership.Role.PROCESSOR)
    client.force_login(writer)
    assert client.post(reverse("mailbox:compose"), {"mailbox": box.pk}).status_code == 404
    assert not OutgoingMessage.objects.exists()


@pytest.mark.parametrize("value", ["²", "1" * 5000], ids=["superscript-two", "5000-digits"])
def test_a_hand_made_mailbox_number_gets_a_german_answer_not_a_server_error(client, box, writer, draft, value):
    # str.isdigit() takes "²", int() does not; int() refuses more than 4,300 digits.
    client.force_login(writer)
    assert client.get(reverse("mailbox:compose"), {"postfach": value}).status_code == 200
    response = client.post(reverse("mailbox:compose"), {"mailbox": value})
    assert response.status_code == 422 and "Bitte ein Postfach wählen." in response.content.decode()
    data = {"mailbox": value, "subject": "Befund", "dienstkennung": "KIM-Mail;Default;V1.0", "version": "x"}
    page = client.post(reverse("mailbox:draft-edit", args=[draft.pk]), data)
    assert page.status_code == 422
    html = page.content.decode()
    assert "Absender (Postfach): Bitte eine gültige Auswahl treffen." in html
    assert "Version: Bitte eine ganze Zahl eingeben." in html and "None:" not in html
    assert 'value="Befund"' in html
    assert OutgoingMessage.objects.get(pk=draft.pk).subject == "Rückfrage"


def test_autosave_answers_the_status_line_and_the_new_version(client, box, writer, draft):
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    data = {"mailbox": box.pk, "subject": "Befund", "body": "Hallo", "to": [PRAXIS], "version": draft.version}
    response = client.post(url, {**data, "dienstkennung": "KIM-Mail;Default;V1.0"}, headers=HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Entwurf gespeichert um" in html
    saved = OutgoingMessage.objects.get(pk=draft.pk)
    assert (saved.subject, saved.body, saved.to, saved.version) == ("Befund", "Hallo", [PRAXIS], draft.version + 1)
    assert re.search(rf'id="draft-version" value="{saved.version}" hx-swap-oob="true"', html)


def test_autosave_with_an_old_version_is_refused_in_german_and_changes_nothing(client, box, writer, draft):
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    OutgoingMessage.objects.filter(pk=draft.pk).update(version=5, subject="Aus dem anderen Fenster")
    data = {"mailbox": box.pk, "subject": "Alt", "dienstkennung": "KIM-Mail;Default;V1.0", "version": 1}
    response = client.post(url, data, headers=HX)
    assert response.status_code == 409
    assert "Nicht gespeichert:" in response.content.decode()
    assert "anderer Stelle geändert" in response.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).subject == "Aus dem anderen Fenster"
    # The page keeps its version (no silent overwrite by the next autosave) and offers to keep its own text.
    assert 'id="draft-version"' not in response.content.decode()
    assert "Diese Fassung speichern" in response.content.decode()
    kept = client.post(url, {k: v for k, v in data.items() if k != "version"}, headers=HX)
    assert kept.status_code == 200 and OutgoingMessage.objects.get(pk=draft.pk).subject == "Alt"


def test_a_second_tab_on_a_draft_sent_meanwhile_says_so_instead_of_a_blank_or_a_page_in_the_status_line(
    client, box, writer, draft
):
    client.force_login(writer)
    OutgoingMessage.objects.filter(pk=draft.pk).update(state=OutgoingMessage.State.QUEUED, message_id="<a@kim.local>")
    data = {"mailbox": box.pk, "subject": "Noch getippt", "dienstkennung": "KIM-Mail;Default;V1.0", "version": 1}
    # Its next autosave: not the sent message's page (a redirect htmx would follow and swap in), but a line.
    saved = client.post(reverse("mailbox:draft-edit", args=[draft.pk]), data, headers=HX)
    assert saved.status_code == 409
    html = saved.content.decode()
    assert "Nicht gespeichert:" in html and "inzwischen gesendet" in html
    assert "Diese Fassung speichern" not in html  # nothing on this page can be saved any more
    # Its "Senden": to the sent message, once (not a 404 that leaves the button dead).
    sent = client.post(reverse("mailbox:draft-send", args=[draft.pk]), data, headers=HX)
    assert sent.status_code == 200
    assert sent["HX-Redirect"] == reverse("mailbox:outgoing-detail", args=[draft.pk])
    page = client.get(sent["HX-Redirect"]).content.decode()
    assert "Die Nachricht wurde bereits gesendet." in page
    assert OutgoingMessage.objects.get(pk=draft.pk).subject == "Rückfrage"


@pytest.mark.parametrize("how", ["removed", "made reader"])
def test_an_open_tab_of_someone_who_may_no_longer_send_is_told_its_edits_are_not_saved(client, box, writer, draft, how):
    owner = UserFactory(username="chefin")
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    client.force_login(writer)
    membership = Membership.objects.get(mailbox=box, user=writer)
    if how == "removed":
        members.membership_remove(user=owner, mailbox=box, membership_id=membership.pk)
    else:
        members.membership_set(user=owner, mailbox=box, username=writer.username, role=Membership.Role.READER)
    data = {"mailbox": box.pk, "subject": "Noch getippt", "dienstkennung": "KIM-Mail;Default;V1.0", "version": 1}

    # Its next autosave: a line saying so (a 404 or 403 would not be shown and the page would look saved).
    saved = client.post(reverse("mailbox:draft-edit", args=[draft.pk]), data, headers=HX)
    assert saved.status_code == 423
    html = saved.content.decode()
    assert "Nicht gespeichert:" in html and "nicht mehr senden" in html
    assert "Diese Fassung speichern" not in html and "Neu laden" not in html
    # Its "Senden": the same, where the page shows send errors.
    sent = client.post(reverse("mailbox:draft-send", args=[draft.pk]), data, headers=HX)
    assert sent.status_code == 423 and "nicht mehr senden" in sent.content.decode()
    draft.refresh_from_db()
    assert draft.subject == "Rückfrage" and draft.state == OutgoingMessage.State.DRAFT
    assert draft.author_left_at is not None  # the owners have it now
    # Someone else's draft is still nobody's business: 404, not the line.
    other = OutgoingMessage.objects.create(mailbox=box, author=owner, subject="Fremd")
    assert client.post(reverse("mailbox:draft-edit", args=[other.pk]), data, headers=HX).status_code == 404


@pytest.mark.parametrize("route", ["mailbox:draft-edit", "mailbox:draft-send"])
def test_a_refused_save_without_javascript_shows_why_and_keeps_everything_typed(client, box, writer, draft, route):
    client.force_login(writer)
    letter = "Sehr geehrte Kollegin,\nanbei der Befund von heute.\n"
    data = {
        "mailbox": box.pk,
        "subject": "B" * 100_000,
        "body": letter,
        "to": [PRAXIS, "zweite@praxis-test.kim.telematik-test"],
        "to_typed": "dritte@praxis-test.kim.telematik-test, falsch@",
        "dienstkennung": "Arztbrief;VHitG-Versand;V1.2",
        "version": draft.version,
    }
    # The plain buttons (noscript): "Entwurf speichern" posts the page to the draft, "Senden" to the send URL.
    response = client.post(reverse(route, args=[draft.pk]), data)
    assert response.status_code == 422
    html = response.content.decode()
    # Why, in German, naming the field and the address …
    assert "Nicht gespeichert:" in html
    assert "Betreff: Bitte sicherstellen, dass der Wert aus höchstens 998 Zeichen besteht." in html
    assert "„falsch@“ ist keine KIM-Adresse" in html
    # … and nothing typed is gone: the text, the chosen recipients, the typed addresses and the Dienstkennung.
    assert f'<textarea name="body" id="id_body" rows="14" maxlength="{MAX_BODY}">{letter}</textarea>' in html
    assert 'value="' + "B" * 100_000 + '"' in html
    assert '<input type="hidden" name="to" value="zweite@praxis-test.kim.telematik-test">' in html
    assert 'value="dritte@praxis-test.kim.telematik-test, falsch@"' in html
    assert '<option value="Arztbrief;VHitG-Versand;V1.2" selected>' in html
    saved = OutgoingMessage.objects.get(pk=draft.pk)
    assert (saved.state, saved.subject, saved.body) == (OutgoingMessage.State.DRAFT, "Rückfrage", "")


def test_a_refused_autosave_names_the_field(client, box, writer, draft):
    client.force_login(writer)
    data = {"mailbox": box.pk, "subject": "B" * 1000, "dienstkennung": "KIM-Mail;Default;V1.0", "version": 1}
    response = client.post(reverse("mailbox:draft-edit", args=[draft.pk]), data, headers=HX)
    assert response.status_code == 422
    assert "Betreff: Bitte sicherstellen" in response.content.decode()


def test_more_recipients_than_a_message_may_go_to_cost_no_text_and_are_named_before_sending(client, box, writer, draft):
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    limit = "Höchstens 100 Empfänger je Nachricht, An und Kopie zusammen."
    assert limit in client.get(url).content.decode()
    many = [f"p{i}@praxis-test.kim.telematik-test" for i in range(101)]
    data = {"mailbox": box.pk, "to": many[:60], "cc": many[60:], "subject": "Rundschreiben", "body": "Langer Text"}
    data = {**data, "dienstkennung": "KIM-Mail;Default;V1.0", "version": draft.version}
    # The autosave keeps the text typed with the 101st recipient, and says at once that it would not go out so.
    response = client.post(url, data, headers=HX)
    assert response.status_code == 200
    html = response.content.decode()
    too_many = "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 101. Bitte entfernen Sie 1."
    assert "Entwurf gespeichert um" in html and "So wird er nicht gesendet:" in html and too_many in html
    saved = OutgoingMessage.objects.get(pk=draft.pk)
    assert (saved.body, saved.to, saved.cc) == ("Langer Text", many[:60], many[60:])
    # "Senden" refuses it in German and sends nothing (the directory, down here, is not even asked).
    sent = client.post(reverse("mailbox:draft-send", args=[draft.pk]), {**data, "version": saved.version}, headers=HX)
    assert sent.status_code == 422
    assert "Die Nachricht wurde nicht gesendet." in sent.content.decode() and too_many in sent.content.decode()
    assert "Verzeichnis" not in sent.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).state == OutgoingMessage.State.DRAFT
    # Without JavaScript the plain save says it too.
    plain = client.post(url, {**data, "version": saved.version + 1}, follow=True)
    assert too_many in plain.content.decode()
    # A hand-made flood is still refused, and changes nothing.
    flood = [f"f{i}@praxis-test.kim.telematik-test" for i in range(1001)]
    refused = client.post(url, {**data, "to": ",".join(flood), "cc": [], "body": "Flut", "version": ""}, headers=HX)
    assert refused.status_code == 422 and "Höchstens 100 Empfänger je Nachricht." in refused.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Langer Text"


def _recipient_limit(html: str) -> str:
    """What the compose page's recipient-limit region says as the server renders it."""
    found = re.search(r'<div id="recipient-limit"[^>]*>(.*?)</div>', html, re.S)
    assert found, "the compose page has its recipient-limit region"
    return re.sub(r"<[^>]+>", "", found.group(1))


def test_the_compose_page_says_from_the_start_when_its_draft_is_at_or_above_the_recipient_limit(
    client, box, writer, draft
):
    # The number and the sentences come from the server (compose.js only fills them in): a draft saved with more
    # than a message may go to shows every chip and how many must go, before any script runs.
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    many = [f"p{i}@praxis-test.kim.telematik-test" for i in range(102)]
    shown = {}
    for count in (99, 100, 102):
        OutgoingMessage.objects.filter(pk=draft.pk).update(to=many[: count - 10], cc=many[count - 10 : count])
        html = client.get(url).content.decode()
        assert html.count('data-remove-chip aria-label="Empfänger entfernen"') == count
        shown[count] = _recipient_limit(html)
    assert shown[99] == ""
    assert shown[100] == (
        "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 100. Um weitere hinzuzufügen, "
        "entfernen Sie bitte zuerst einen."
    )
    assert (
        shown[102]
        == "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 102. Bitte entfernen Sie 2."
    )
    assert 'data-max="100"' in html
    assert 'data-over-text="Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat {count}.' in html


def test_a_nul_character_pasted_with_the_text_is_dropped_not_a_reason_to_refuse_every_save(client, box, writer, draft):
    # Invisible on the page: refused, it made every autosave fail for a character nobody could find and remove.
    client.force_login(writer)
    data = {"mailbox": box.pk, "subject": "Be\x00fund\x0b2", "body": "Text\x00 aus\x1b dem PDF", "to": [PRAXIS]}
    data = {**data, "dienstkennung": "KIM-Mail;Default;V1.0", "version": draft.version}
    response = client.post(reverse("mailbox:draft-edit", args=[draft.pk]), data, headers=HX)
    assert response.status_code == 200 and "Entwurf gespeichert um" in response.content.decode()
    saved = OutgoingMessage.objects.get(pk=draft.pk)
    assert (saved.subject, saved.body) == ("Befund 2", "Text aus\x1b dem PDF")


def test_typed_addresses_are_checked_against_the_kim_rules(client, writer):
    client.force_login(writer)
    url = reverse("mailbox:compose-address")
    html = client.get(url, {"field": "to", "to_typed": "jemand@gmail.com"}).content.decode()
    assert "keine KIM-Adresse" in html and 'name="to"' not in html
    # A valid KIM address while the directory is away: kept, and checked before sending.
    html = client.get(url, {"field": "cc", "cc_typed": "Praxis@Praxis-Test.kim.telematik-test"}).content.decode()
    assert f'<input type="hidden" name="cc" value="{PRAXIS}">' in html
    assert "Verzeichnis nicht erreichbar" in html


def test_send_without_recipient_names_the_problem_and_queues_nothing(client, box, writer, draft):
    client.force_login(writer)
    data = {"mailbox": box.pk, "subject": "Befund", "dienstkennung": "KIM-Mail;Default;V1.0", "version": 1}
    response = client.post(reverse("mailbox:draft-send", args=[draft.pk]), data, headers=HX)
    assert response.status_code == 422
    html = response.content.decode()
    assert "Die Nachricht wurde nicht gesendet." in html and "mindestens einen Empfänger" in html
    assert OutgoingMessage.objects.get(pk=draft.pk).state == OutgoingMessage.State.DRAFT


def test_send_while_the_directory_is_down_sends_nothing_half_checked(client, box, writer, draft):
    client.force_login(writer)
    data = {"mailbox": box.pk, "to": [PRAXIS], "dienstkennung": "KIM-Mail;Default;V1.0", "version": 1}
    response = client.post(reverse("mailbox:draft-send", args=[draft.pk]), data, headers=HX)
    assert response.status_code == 422
    assert "nicht im Verzeichnis geprüft" in response.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).state == OutgoingMessage.State.DRAFT


def test_remove_recipient_from_the_problem_list(client, box, writer, draft):
    client.force_login(writer)
    OutgoingMessage.objects.filter(pk=draft.pk).update(cc=["zweite@praxis-test.kim.telematik-test"])
    response = client.post(
        reverse("mailbox:draft-remove-recipient", args=[draft.pk]), {"address": PRAXIS, "version": 1}, headers=HX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert f"{PRAXIS} wurde aus den Empfängern entfernt." in html
    assert 'id="recipients" class="compose-recipients" hx-swap-oob="true"' in html
    saved = OutgoingMessage.objects.get(pk=draft.pk)
    assert saved.to == [] and saved.cc == ["zweite@praxis-test.kim.telematik-test"]


def test_remove_recipient_works_for_an_address_the_kim_rules_take_but_an_email_field_would_not(
    client, box, writer, draft
):
    # Two dots in a row pass the KIM address pattern (and the form), so the pre-flight names the address (not in
    # the directory) with its "Empfänger entfernen" button: that button must remove it, not answer 404.
    odd = "max..mustermann@praxis-test.kim.telematik-test"
    client.force_login(writer)
    data = {"mailbox": box.pk, "to": [PRAXIS], "to_typed": odd, "dienstkennung": "KIM-Mail;Default;V1.0"}
    assert client.post(reverse("mailbox:draft-edit", args=[draft.pk]), data, headers=HX).status_code == 200
    assert OutgoingMessage.objects.get(pk=draft.pk).to == [PRAXIS, odd]
    response = client.post(reverse("mailbox:draft-remove-recipient", args=[draft.pk]), {"address": odd}, headers=HX)
    assert response.status_code == 200
    assert f"{odd} wurde aus den Empfängern entfernt." in response.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).to == [PRAXIS]


def test_attachments_are_added_and_removed(client, writer, draft):
    client.force_login(writer)
    # The limits are said before a file is chosen, not only in the refusal of one too large.
    page = client.get(reverse("mailbox:draft-edit", args=[draft.pk])).content.decode()
    assert "Je Datei höchstens 500 MB, die ganze Nachricht höchstens 700 MB." in page
    url = reverse("mailbox:draft-attachment-add", args=[draft.pk])
    response = client.post(url, {"files": [SimpleUploadedFile("Befund Müller.pdf", b"%PDF-1.4\n")]}, headers=HX)
    assert response.status_code == 200
    assert "Befund Müller.pdf" in response.content.decode()
    attachment = draft.attachments.get()
    assert attachment.content_type == "application/pdf"
    # The upload bumped the draft's version: the form's hidden field follows, so the next autosave is no conflict.
    version = OutgoingMessage.objects.get(pk=draft.pk).version
    assert f'id="draft-version" value="{version}" hx-swap-oob="true"' in response.content.decode()
    remove = reverse("mailbox:draft-attachment-remove", args=[draft.pk, attachment.pk])
    assert "Keine Anhänge." in client.post(remove, headers=HX).content.decode()
    assert not draft.attachments.exists()
    # Nothing chosen: a German hint, no error page.
    assert "Bitte eine Datei auswählen." in client.post(url, {}, headers=HX).content.decode()


def test_a_file_over_the_limit_costs_none_of_the_files_chosen_with_it(client, writer, draft, monkeypatch):
    import mailbox.services.compose as compose

    monkeypatch.setattr(compose, "MAX_ATTACHMENT_BYTES", 1024)
    client.force_login(writer)
    files = [
        SimpleUploadedFile("CT.dcm", b"\x00" * 1025),
        SimpleUploadedFile("Befund.pdf", b"%PDF-1.4\n"),
        SimpleUploadedFile("Röntgen.dcm", b"\x01" * 2048),
        SimpleUploadedFile("Brief.txt", b"Hallo"),
    ]
    response = client.post(reverse("mailbox:draft-attachment-add", args=[draft.pk]), {"files": files}, headers=HX)
    assert response.status_code == 422
    html = response.content.decode()
    assert "Die Datei „CT.dcm“ ist zu groß" in html and "Die Datei „Röntgen.dcm“ ist zu groß" in html
    assert sorted(draft.attachments.values_list("filename", flat=True)) == ["Befund.pdf", "Brief.txt"]
    assert "Befund.pdf" in html and "Brief.txt" in html


def test_a_colleagues_draft_is_not_shown_to_others(client, box, draft):
    colleague = UserFactory(username="kollege")
    MembershipFactory(mailbox=box, user=colleague, role=Membership.Role.PROCESSOR)
    client.force_login(colleague)
    assert client.get(reverse("mailbox:draft-edit", args=[draft.pk])).status_code == 404
    assert "Rückfrage" not in client.get(reverse("mailbox:drafts")).content.decode()


def test_reply_starts_a_threaded_draft_and_the_message_page_offers_it(client, box, writer):
    message = message_ingest(mailbox=box, uidl="u1", raw=MAIL_WITH_PDF)
    client.force_login(writer)
    html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert "Antworten" in html and "Weiterleiten" in html and 'id="conversation"' in html
    conversation = client.get(reverse("mailbox:message-conversation", args=[message.pk])).content.decode()
    assert "Eingangsbestätigung senden" in conversation  # the letter is an eArztbrief
    response = client.post(reverse("mailbox:message-reply", args=[message.pk]))
    draft = OutgoingMessage.objects.get(in_reply_to=message)
    assert response["Location"] == reverse("mailbox:draft-edit", args=[draft.pk])
    assert draft.to == [PRAXIS] and draft.subject.startswith("AW:")
    page = client.get(response["Location"]).content.decode()
    assert '<h1 id="compose-heading">Antworten</h1>' in page


def test_sent_message_shows_its_timeline_and_the_fragment_alone(client, box, writer):
    now = timezone.now()
    sent = OutgoingMessage.objects.create(
        mailbox=box, author=writer, subject="Befund", to=[PRAXIS], state="sent", queued_at=now, sent_at=now
    )
    OutgoingRecipient.objects.create(outgoing=sent, address=PRAXIS, state="delivered", updated_at=now)
    client.force_login(writer)
    url = reverse("mailbox:outgoing-detail", args=[sent.pk])
    html = client.get(url).content.decode()
    assert f'id="timeline-{sent.pk}"' in html and "zugestellt" in html and PRAXIS in html
    assert AuditEvent.objects.filter(action="outgoing.viewed", actor_id=writer.pk, mailbox_id=box.pk).count() == 1
    fragment = client.get(url, headers={**HX, "HX-Target": f"timeline-{sent.pk}"}).content.decode()
    assert fragment.lstrip().startswith("<section") and "<html" not in fragment
    assert "Befund" in client.get(reverse("mailbox:mailbox-sent", args=[box.pk])).content.decode()


def test_uncertain_delivery_is_decided_by_a_person(client, box, writer):
    sent = OutgoingMessage.objects.create(
        mailbox=box, author=writer, subject="Befund", to=[PRAXIS], state="uncertain", queued_at=timezone.now()
    )
    client.force_login(writer)
    html = client.get(reverse("mailbox:outgoing-detail", args=[sent.pk])).content.decode()
    assert "Zustellung ungewiss." in html and "Ist angekommen – nicht erneut senden" in html
    assert "Ist nicht angekommen – erneut senden" in html
    assert "Ungewiss" in client.get(reverse("mailbox:outbox")).content.decode() or "ungewiss" in html
    response = client.post(
        reverse("mailbox:outgoing-uncertain", args=[sent.pk]), {"delivered": "yes", "version": 1}, headers=HX
    )
    assert response.status_code == 200 and "Als zugestellt vermerkt." in response.content.decode()
    assert OutgoingMessage.objects.get(pk=sent.pk).state == OutgoingMessage.State.SENT
    # Decided already: a second click says so instead of deciding twice.
    again = client.post(reverse("mailbox:outgoing-uncertain", args=[sent.pk]), {"delivered": "no"}, headers=HX)
    assert again.status_code == 409 and "nicht mehr ungewiss" in again.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_outgoing_changes_reach_the_mailboxs_members_only_as_ids():
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from mailbox import events
    from mailbox.consumers import InboxConsumer
    from mailbox.services.compose import OutgoingData, outgoing_draft_save

    def world():
        box = MailboxFactory(display_name="Station Kardiologie")
        member = UserFactory(username="mitglied")
        MembershipFactory(mailbox=box, user=member, role=Membership.Role.OBSERVER)
        writer = UserFactory(username="schreiber")
        MembershipFactory(mailbox=box, user=writer, role=Membership.Role.PROCESSOR)
        outsider = UserFactory(username="aussen")
        MembershipFactory(mailbox=MailboxFactory(), user=outsider)
        return box, member, writer, outsider

    box, member, writer, outsider = await database_sync_to_async(world)()
    sockets = {}
    for name, user in (("member", member), ("writer", writer), ("outsider", outsider)):
        sockets[name] = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
        sockets[name].scope["user"] = user
        assert (await sockets[name].connect())[0]
    draft = await database_sync_to_async(outgoing_draft_save)(
        user=writer, mailbox_id=box.pk, data=OutgoingData(subject="Geheimer Befund", to=[PRAXIS])
    )
    # A draft's autosaves concern its author only.
    html = await sockets["writer"].receive_from(timeout=5)
    assert f'data-outgoing="{draft.pk}"' in html and f'data-mailbox="{box.pk}"' in html
    assert "Geheimer Befund" not in html and PRAXIS not in html  # ids only: the page re-reads through its view
    assert await sockets["member"].receive_nothing(timeout=0.5)

    def sent_now() -> None:
        OutgoingMessage.objects.filter(pk=draft.pk).update(state=OutgoingMessage.State.SENT)
        events.broadcast_outgoing_changed(mailbox_id=box.pk, outgoing_id=draft.pk)

    await database_sync_to_async(sent_now)()
    for name in ("member", "writer"):
        assert f'data-outgoing="{draft.pk}"' in await sockets[name].receive_from(timeout=5)
    assert await sockets["outsider"].receive_nothing(timeout=0.5)
    for socket in sockets.values():
        await socket.disconnect()
    from django.db import connection

    await database_sync_to_async(lambda: connection.close())()


def test_send_without_a_version_after_a_reloads_beacon_saves_what_the_page_shows(client, box, writer, draft):
    # A reload's beacon stored the draft after the page had loaded: compose.js leaves the version out of the page's
    # first save or send then (the beacon's version is this tab's own).
    OutgoingMessage.objects.filter(pk=draft.pk).update(version=4)
    client.force_login(writer)
    data = {"mailbox": box.pk, "subject": "Wie gezeigt", "dienstkennung": "KIM-Mail;Default;V1.0"}
    response = client.post(reverse("mailbox:draft-send", args=[draft.pk]), data, headers=HX)
    assert response.status_code == 422  # no recipient: the pre-flight, not a conflict, stops it
    assert "mindestens einen Empfänger" in response.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).subject == "Wie gezeigt"


def _page_version(html: str) -> int:
    found = re.search(r'id="draft-version" value="(\d+)"', html)
    assert found, "the page carries the draft's version"
    return int(found.group(1))


@pytest.fixture
def two_tabs(client, writer, draft):
    """The author's draft open in two tabs (two clients, two sessions), each with the version it loaded."""
    from django.test import Client

    other = Client()
    other.force_login(writer)
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    return (client, _page_version(client.get(url).content.decode())), (
        other,
        _page_version(other.get(url).content.decode()),
    )


def _typed(box, version, **fields):
    data = {"mailbox": box.pk, "to": [PRAXIS], "dienstkennung": "KIM-Mail;Default;V1.0", **fields}
    if version is not None:
        data["version"] = version
    return data


def test_send_from_a_stale_tab_is_refused_keeps_the_newer_text_and_offers_both_ways(box, draft, two_tabs):
    (stale, loaded), (fresh, fresh_version) = two_tabs
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    saved = fresh.post(url, _typed(box, fresh_version, subject="Neu", body="Aus dem zweiten Tab"), headers=HX)
    assert saved.status_code == 200
    newer = OutgoingMessage.objects.get(pk=draft.pk)

    response = stale.post(
        reverse("mailbox:draft-send", args=[draft.pk]), _typed(box, loaded, subject="Alt", body="Veraltet"), headers=HX
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "Die Nachricht wurde nicht gesendet." in html and "anderer Stelle geändert" in html
    assert "Neuere Fassung laden" in html and "Diese Fassung speichern" in html
    # The page keeps its version: its next autosave is refused too instead of overwriting the newer text.
    assert 'id="draft-version"' not in html
    after = OutgoingMessage.objects.get(pk=draft.pk)
    assert (after.state, after.subject, after.body, after.version) == (
        OutgoingMessage.State.DRAFT,
        "Neu",
        "Aus dem zweiten Tab",
        newer.version,
    )
    refused = stale.post(url, _typed(box, loaded, subject="Alt", body="Veraltet"), headers=HX)
    assert refused.status_code == 409 and "Neuere Fassung laden" in refused.content.decode()
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Aus dem zweiten Tab"
    # "Diese Fassung speichern": the same fields without the version keep this tab's text on purpose.
    kept = stale.post(url, _typed(box, None, subject="Alt", body="Veraltet"), headers=HX)
    assert kept.status_code == 200 and OutgoingMessage.objects.get(pk=draft.pk).body == "Veraltet"


def test_without_javascript_a_stale_save_shows_the_typed_text_and_the_newer_version(box, draft, two_tabs):
    (stale, loaded), (fresh, fresh_version) = two_tabs
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    fresh.post(url, _typed(box, fresh_version, subject="Neu", body="Text aus dem zweiten Tab"))
    newer = OutgoingMessage.objects.get(pk=draft.pk)

    page = stale.post(url, _typed(box, loaded, subject="Mein Betreff", body="Mein langer Text"))
    assert page.status_code == 409
    html = page.content.decode()
    assert "Nicht gespeichert:" in html and "anderer Stelle geändert" in html
    # Nothing typed is lost: the fields hold what was posted; the newer version is shown beside them.
    assert 'value="Mein Betreff"' in html and ">Mein langer Text</textarea>" in html
    assert "Neuere Fassung ansehen" in html and "Text aus dem zweiten Tab" in html
    assert f'href="{url}">Neuere Fassung laden</a>' in html
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Text aus dem zweiten Tab"
    # The hidden field now names the newer version: saving again replaces it, knowingly.
    assert _page_version(html) == newer.version
    again = stale.post(url, _typed(box, _page_version(html), subject="Mein Betreff", body="Mein langer Text"))
    assert again.status_code == 302 and OutgoingMessage.objects.get(pk=draft.pk).body == "Mein langer Text"


def test_without_javascript_a_stale_send_sends_nothing_and_keeps_the_typed_text(box, draft, two_tabs):
    (stale, loaded), (fresh, fresh_version) = two_tabs
    fresh.post(reverse("mailbox:draft-edit", args=[draft.pk]), _typed(box, fresh_version, body="Neuer Text"))
    page = stale.post(reverse("mailbox:draft-send", args=[draft.pk]), _typed(box, loaded, body="Alter Text"))
    assert page.status_code == 409
    html = page.content.decode()
    assert "Die Nachricht wurde nicht gesendet." in html and ">Alter Text</textarea>" in html
    after = OutgoingMessage.objects.get(pk=draft.pk)
    assert (after.state, after.body) == (OutgoingMessage.State.DRAFT, "Neuer Text")


def test_the_page_asks_whether_its_version_is_still_the_stored_one(client, box, writer, draft):
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    check = {**HX, "HX-Target": "draft-status"}
    assert client.get(url, {"version": draft.version}, headers=check).status_code == 204
    OutgoingMessage.objects.filter(pk=draft.pk).update(version=draft.version + 1, body="Anderswo")
    stale = client.get(url, {"version": draft.version}, headers=check)
    assert stale.status_code == 200
    html = stale.content.decode()
    assert 'id="draft-status"' in html and "anderer Stelle geändert" in html and "Diese Fassung speichern" in html
    assert 'id="draft-version"' not in html  # the page's version stays until the user chooses
    assert client.get(url, {"version": draft.version + 1}, headers=check).status_code == 204
    # Sent from another tab: the status line says so (a redirect would swap the sent page into it).
    OutgoingMessage.objects.filter(pk=draft.pk).update(state=OutgoingMessage.State.QUEUED, message_id="<c@kim.local>")
    sent = client.get(url, {"version": draft.version + 1}, headers=check)
    assert sent.status_code == 409 and "inzwischen gesendet" in sent.content.decode()
    assert 'id="draft-status"' in sent.content.decode() and "<html" not in sent.content.decode()
    OutgoingMessage.objects.filter(pk=draft.pk).update(state=OutgoingMessage.State.DRAFT)
    # No longer allowed to send from the mailbox: said in the status line too, not a 403 the page never shows.
    Membership.objects.filter(mailbox=box, user=writer).update(role=Membership.Role.READER)
    gone = client.get(url, {"version": draft.version + 1}, headers=check)
    assert gone.status_code == 423 and "nicht mehr senden" in gone.content.decode()
    Membership.objects.filter(mailbox=box, user=writer).update(role=Membership.Role.PROCESSOR)
    other = UserFactory(username="fremd")
    MembershipFactory(mailbox=box, user=other, role=Membership.Role.PROCESSOR)
    client.force_login(other)
    assert client.get(url, {"version": 1}, headers=check).status_code == 404  # another author's draft


def test_a_confirmed_save_and_a_send_tell_the_page_so_its_local_copy_may_go(client, box, writer, draft):
    client.force_login(writer)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    saved = client.post(url, _typed(box, draft.version, body="Hallo"), headers=HX)
    assert '"draft-saved"' in saved["HX-Trigger"]
    refused = client.post(url, _typed(box, draft.version, body="Hallo"), headers=HX)
    assert refused.status_code == 409 and "HX-Trigger" not in refused


def test_signing_out_marks_the_page_that_clears_a_tabs_unsaved_drafts(client, writer):
    client.force_login(writer)
    page = client.get(reverse("mailbox:drafts")).content.decode()
    assert 'name="next" value="/login/?abgemeldet=abmeldung"' in page
    response = client.post(reverse("logout"), {"next": "/login/?abgemeldet=abmeldung"}, follow=True)
    html = response.content.decode()
    assert "Sie haben sich abgemeldet." in html and "data-logged-out" in html
    # A session that merely ended (idle, another tab) keeps the tab's copies for after the next sign-in.
    assert "data-logged-out" not in client.get(reverse("login"), {"abgemeldet": "idle"}).content.decode()


def test_the_conversation_shows_the_sent_reply_next_to_the_letter(client, box, writer):
    letter = message_ingest(mailbox=box, uidl="u2", raw=simple_mail("Befund Herr Meier"))
    reply = OutgoingMessage.objects.create(
        mailbox=box,
        author=writer,
        subject="AW: Befund Herr Meier",
        to=[PRAXIS],
        state="delivered",
        queued_at=timezone.now(),
        message_id="<22222222-2222-4222-8222-222222222222@kim.local>",
        in_reply_to_header=letter.message_id,
    )
    client.force_login(writer)
    html = client.get(reverse("mailbox:message-conversation", args=[letter.pk])).content.decode()
    assert "Verlauf der Unterhaltung" in html
    assert reverse("mailbox:outgoing-detail", args=[reply.pk]) in html and "zugestellt" in html
    assert "Eingangsbestätigung" not in html  # a plain KIM-Mail is no eArztbrief
    page = client.get(reverse("mailbox:outgoing-detail", args=[reply.pk])).content.decode()
    assert reverse("mailbox:message-detail", args=[letter.pk]) in page


def test_acknowledgement_while_the_directory_is_down_says_so_and_sends_nothing(client, box, writer):
    letter = message_ingest(mailbox=box, uidl="u3", raw=MAIL_WITH_PDF)
    client.force_login(writer)
    response = client.post(reverse("mailbox:message-acknowledge", args=[letter.pk]), follow=True)
    html = response.content.decode()
    assert "nicht im Verzeichnis geprüft" in html
    assert not OutgoingMessage.objects.filter(in_reply_to=letter).exclude(state="draft").exists()


def test_sent_list_reads_a_fixed_number_of_queries(client, box, writer, django_assert_max_num_queries):
    def sent(n: int) -> None:
        for i in range(n):
            o = OutgoingMessage.objects.create(
                mailbox=box, author=writer, subject=f"Befund {i}", to=[PRAXIS], state="failed", claimed_by=writer
            )
            OutgoingRecipient.objects.create(outgoing=o, address=PRAXIS, state="failed")

    client.force_login(writer)
    sent(2)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("mailbox:outbox"))
    sent(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = client.get(reverse("mailbox:outbox")).content.decode()
    assert html.count('<li class="outgoing-row') == 22


def test_a_message_to_copy_recipients_only_is_listed_with_them_not_as_without_recipient(client, box, writer, draft):
    # Cc alone is a valid addressing (the send checks "An or Kopie"): the lists named none, or "An –".
    OutgoingMessage.objects.filter(pk=draft.pk).update(to=[], cc=[PRAXIS])
    OutgoingMessage.objects.create(mailbox=box, author=writer, subject="Kopie", cc=[PRAXIS], state="failed")
    client.force_login(writer)
    drafts = client.get(reverse("mailbox:drafts")).content.decode()
    assert f"Kopie (Cc) {PRAXIS}" in drafts and "noch kein Empfänger" not in drafts
    outbox = client.get(reverse("mailbox:outbox")).content.decode()
    assert f"Kopie (Cc) {PRAXIS}" in outbox and "An –" not in outbox


def test_forward_carries_the_original_as_a_whole_message(client, box, writer):
    letter = message_ingest(mailbox=box, uidl="u4", raw=MAIL_WITH_PDF)
    client.force_login(writer)
    response = client.post(reverse("mailbox:message-forward", args=[letter.pk]))
    draft = OutgoingMessage.objects.get(in_reply_to=letter, kind="forward")
    html = client.get(response["Location"]).content.decode()
    assert '<h1 id="compose-heading">Weiterleiten</h1>' in html
    assert "message/rfc822" in html and "(weitergeleitete Nachricht)" in html
    assert draft.subject.startswith("WG:") and draft.to == []


def test_a_sent_file_is_downloaded_audited_and_only_through_its_own_message(client, box, writer, draft):
    client.force_login(writer)
    client.post(
        reverse("mailbox:draft-attachment-add", args=[draft.pk]),
        {"files": [SimpleUploadedFile("Befund.html", b"<script>alert(1)</script>")]},
        headers=HX,
    )
    attachment = draft.attachments.get()
    response = client.get(reverse("mailbox:outgoing-attachment-download", args=[draft.pk, attachment.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Content-Type"] == "application/octet-stream"  # never rendered in the portal's origin
    assert b"".join(response.streaming_content) == b"<script>alert(1)</script>"
    event = AuditEvent.objects.get(action="outgoing.attachment_downloaded", actor_id=writer.pk)
    # Two files of one name are told apart on the trail.
    assert (event.details["attachment"], event.details["attachment_id"]) == ("Befund.html", attachment.pk)
    other = OutgoingMessage.objects.create(mailbox=box, author=writer, subject="Andere", state="sent")
    url = reverse("mailbox:outgoing-attachment-download", args=[other.pk, attachment.pk])
    assert client.get(url).status_code == 404


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" id="[\w-]+" value="([^"]*)"', html)
    assert found, f"the page carries {name}"
    return found.group(1)


def _loaded(client, draft) -> dict[str, str]:
    """What a compose page loaded: its version, the text it is based on and the files it shows."""
    html = client.get(reverse("mailbox:draft-edit", args=[draft.pk])).content.decode()
    return {name: _hidden(html, name) for name in ("version", "content_hash", "shown_attachments")}


def _as_shown(box, loaded, **fields):
    """A post of the page's fields with what it loaded (version, text record, files shown)."""
    return {**_typed(box, None, **fields), **loaded}


def _upload(client, draft, name="Befund.pdf"):
    url = reverse("mailbox:draft-attachment-add", args=[draft.pk])
    response = client.post(url, {"files": [SimpleUploadedFile(name, b"%PDF-1.4\n")]}, headers=HX)
    assert response.status_code == 200
    return draft.attachments.get(filename=name)


def test_a_file_added_in_another_tab_is_no_conflict_for_this_tabs_text(box, draft, two_tabs):
    (tab, _v), (other, _w) = two_tabs
    loaded = _loaded(tab, draft)
    _upload(other, draft)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    saved = tab.post(url, _as_shown(box, loaded, body="Weiter geschrieben"), headers=HX)
    assert saved.status_code == 200
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Weiter geschrieben"
    # The page's record of its text follows its own save (and of the files, nothing: it still shows none).
    html = saved.content.decode()
    fresh = OutgoingMessage.objects.get(pk=draft.pk)
    assert f'id="draft-content" value="{fresh.content_hash}" hx-swap-oob="true"' in html
    assert "draft-attachments" not in html


def test_text_changed_in_another_tab_is_still_a_conflict_whatever_the_files(box, draft, two_tabs):
    (tab, _v), (other, _w) = two_tabs
    loaded = _loaded(tab, draft)
    theirs = _loaded(other, draft)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    assert other.post(url, _as_shown(box, theirs, body="Aus dem zweiten Tab"), headers=HX).status_code == 200
    refused = tab.post(url, _as_shown(box, loaded, body="Veraltet"), headers=HX)
    assert refused.status_code == 409 and "Neuere Fassung laden" in refused.content.decode()
    assert 'id="draft-content"' not in refused.content.decode()  # the page keeps its record: refused again
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Aus dem zweiten Tab"
    # The same text written back elsewhere (nothing of it would be overwritten): no conflict any more.
    other.post(url, _as_shown(box, _loaded(other, draft), subject="Rückfrage", body=""), headers=HX)
    assert tab.post(url, _as_shown(box, loaded, body="Jetzt"), headers=HX).status_code == 200


def test_the_page_asking_whether_the_draft_changed_gets_the_files_added_elsewhere(box, draft, two_tabs):
    (tab, _v), (other, _w) = two_tabs
    loaded = _loaded(tab, draft)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    check = {**HX, "HX-Target": "draft-status"}
    assert tab.get(url, loaded, headers=check).status_code == 204
    attachment = _upload(other, draft)
    answer = tab.get(url, loaded, headers=check)
    # Not a conflict: the attachment list is shown again, with the page's record of it.
    assert answer.status_code == 200 and answer["HX-Retarget"] == "#attachments"
    html = answer.content.decode()
    assert "Befund.pdf" in html and "Nicht gespeichert" not in html
    assert f'id="draft-attachments" value="{attachment.pk}" hx-swap-oob="true"' in html
    assert tab.get(url, {**loaded, "shown_attachments": str(attachment.pk)}, headers=check).status_code == 204
    # Text saved elsewhere is still said as a conflict.
    other.post(url, _as_shown(box, _loaded(other, draft), body="Neu"), headers=HX)
    conflict = tab.get(url, {**loaded, "shown_attachments": str(attachment.pk)}, headers=check)
    assert conflict.status_code == 200 and "Neuere Fassung laden" in conflict.content.decode()


def test_a_send_from_a_page_that_did_not_show_a_file_added_elsewhere_sends_nothing_and_shows_it(box, draft, two_tabs):
    (tab, _v), (other, _w) = two_tabs
    loaded = _loaded(tab, draft)
    attachment = _upload(other, draft)
    send = reverse("mailbox:draft-send", args=[draft.pk])
    response = tab.post(send, _as_shown(box, loaded, body="Mein Text"), headers=HX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Die Nachricht wurde nicht gesendet." in html and "Anhänge des Entwurfs wurden inzwischen geändert" in html
    # The list comes along (out of band) with the page's new record of it; the text was saved, not sent.
    assert '<section id="attachments" class="compose-attachments"' in html and "Befund.pdf" in html
    assert f'id="draft-attachments" value="{attachment.pk}" hx-swap-oob="true"' in html
    stored = OutgoingMessage.objects.get(pk=draft.pk)
    assert (stored.state, stored.body) == (OutgoingMessage.State.DRAFT, "Mein Text")
    assert f'id="draft-content" value="{stored.content_hash}" hx-swap-oob="true"' in html
    # A file removed elsewhere that the page still shows: refused as well (it would not be sent).
    shown = {**loaded, "content_hash": stored.content_hash, "shown_attachments": str(attachment.pk)}
    attachment.delete()
    again = tab.post(send, _as_shown(box, shown, body="Mein Text"), headers=HX)
    assert again.status_code == 409 and "Anhänge des Entwurfs" in again.content.decode()


def test_a_draft_with_many_files_still_saves_and_checks_what_its_page_shows(client, box, writer, draft):
    # 1,300 files: the page's record of them ("12 13 …") is longer than 5,000 characters. With that as the field's
    # limit every save of the page was refused, and what was typed afterwards was never saved.
    OutgoingAttachment.objects.bulk_create(
        OutgoingAttachment(
            outgoing=draft,
            position=i,
            filename=f"Seite{i}.pdf",
            content_type="application/pdf",
            size=1,
            sha256="0" * 64,
        )
        for i in range(1, 1301)
    )
    client.force_login(writer)
    loaded = _loaded(client, draft)
    assert len(loaded["shown_attachments"]) > 5000
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    assert client.post(url, _as_shown(box, loaded, body="Weiter geschrieben"), headers=HX).status_code == 200
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Weiter geschrieben"
    check = client.get(
        url,
        {**loaded, "content_hash": OutgoingMessage.objects.get(pk=draft.pk).content_hash},
        headers={**HX, "HX-Target": "draft-status"},
    )
    assert check.status_code == 204


def test_without_javascript_a_send_meeting_other_files_saves_the_text_and_shows_the_files(box, draft, two_tabs):
    (tab, _v), (other, _w) = two_tabs
    loaded = _loaded(tab, draft)
    _upload(other, draft)
    send = reverse("mailbox:draft-send", args=[draft.pk])
    response = tab.post(send, _as_shown(box, loaded, body="Mein Text"), follow=True)
    html = response.content.decode()
    assert "Anhänge des Entwurfs wurden inzwischen geändert" in html and "Befund.pdf" in html
    assert OutgoingMessage.objects.get(pk=draft.pk).state == OutgoingMessage.State.DRAFT


def test_a_stale_send_marks_its_notice_for_the_page_to_clear_once_the_text_is_saved(box, draft, two_tabs):
    (tab, _v), (other, _w) = two_tabs
    loaded = _loaded(tab, draft)
    url = reverse("mailbox:draft-edit", args=[draft.pk])
    other.post(url, _as_shown(box, _loaded(other, draft), body="Neu"), headers=HX)
    html = tab.post(reverse("mailbox:draft-send", args=[draft.pk]), _as_shown(box, loaded), headers=HX)
    assert "data-send-stale" in html.content.decode() and "Gesendet wurde noch nichts" in html.content.decode()
    # The buttons keeping this page's text leave both guards out.
    assert html.content.decode().count('hx-params="not version,content_hash,') == 1
