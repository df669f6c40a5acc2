"""Pre-flight against the directory (a real slapd): every recipient checked before anything is queued."""

from __future__ import annotations

import pytest
from django.urls import reverse

from directory.clients.vzd import VzdClient
from mailbox.models import OutgoingMessage
from mailbox.services.compose import OutgoingData, outgoing_attachment_add, outgoing_draft_save
from mailbox.services.outbox import outgoing_send
from mailbox.services.preflight import DirectoryUnreachable, PreflightFailed, outgoing_preflight
from tests.mailbox.conftest import PRAXIS
from tests.mailbox.send.conftest import EXPIRED, FOREIGN_TID, NO_CERT, SMALL_ONLY, UNKNOWN

pytestmark = pytest.mark.django_db(transaction=True)


def _draft(user, account, *to: str) -> OutgoingMessage:
    return outgoing_draft_save(
        user=user, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=list(to))
    )


def _reasons(user, draft) -> dict[str, str]:
    return {p.address: p.reason for p in outgoing_preflight(user=user, draft=draft)}


def test_a_recipient_with_a_valid_certificate_passes(account, sender, vzd):
    assert outgoing_preflight(user=sender, draft=_draft(sender, account, PRAXIS)) == []


@pytest.mark.parametrize(
    ("address", "words"),
    [
        (NO_CERT, "kein Verschlüsselungszertifikat"),
        (EXPIRED, "Zertifikat abgelaufen"),
        (FOREIGN_TID, "nicht alle dieselbe Telematik-ID"),
        (UNKNOWN, "nicht im Verzeichnis"),
        ("kollege@gmail.com", "keine KIM-Adresse"),
    ],
)
def test_each_problem_names_the_recipient_and_the_reason_in_german(account, sender, vzd, address, words):
    reasons = _reasons(sender, _draft(sender, account, PRAXIS, address))
    assert list(reasons) == [address]
    assert address in reasons[address] and words in reasons[address]


def test_nothing_is_queued_half_checked(cm, account, sender, vzd, sent_tasks):
    draft = _draft(sender, account, PRAXIS, NO_CERT, UNKNOWN)
    with pytest.raises(PreflightFailed) as failed:
        outgoing_send(user=sender, draft=draft, version=draft.version)
    assert [p.address for p in failed.value.problems] == [NO_CERT, UNKNOWN]
    draft.refresh_from_db()
    assert draft.state == OutgoingMessage.State.DRAFT and draft.message_id == ""
    assert sent_tasks == [] and cm.sent_messages() == []


def test_a_mail_over_15_mib_goes_only_to_large_message_recipients(account, sender, vzd):
    draft = _draft(sender, account, PRAXIS, SMALL_ONLY)
    # 12 MiB of file: about 16 MiB once base64 encoded.
    outgoing_attachment_add(user=sender, draft=draft, filename="ct.dcm", content=b"\x00" * (12 * 1024 * 1024))
    reasons = _reasons(sender, draft)
    assert list(reasons) == [SMALL_ONLY]
    assert "über 15 MiB" in reasons[SMALL_ONLY] and "1.5" in reasons[SMALL_ONLY]


def test_a_small_mail_goes_to_every_kim_version(account, sender, vzd):
    draft = _draft(sender, account, SMALL_ONLY)
    outgoing_attachment_add(user=sender, draft=draft, filename="brief.pdf", content=b"%PDF" * 1000)
    assert _reasons(sender, draft) == {}


def test_directory_down_sends_nothing(account, sender, vzd_down, sent_tasks):
    draft = _draft(sender, account, PRAXIS)
    with pytest.raises(DirectoryUnreachable) as down:
        outgoing_send(user=sender, draft=draft, version=draft.version)
    assert "nicht gesendet" in down.value.message
    assert OutgoingMessage.objects.get(pk=draft.pk).state == OutgoingMessage.State.DRAFT
    assert sent_tasks == []


def test_no_recipient_at_all(account, sender, vzd):
    reasons = _reasons(sender, _draft(sender, account))
    assert reasons == {"": "Bitte mindestens einen Empfänger angeben."}


@pytest.fixture
def searches(monkeypatch) -> list[str]:
    """The LDAP filters sent to the directory (the real slapd still answers each)."""
    sent: list[str] = []
    search = VzdClient.search

    def counted(self, ldap_filter, attributes):
        sent.append(ldap_filter)
        return search(self, ldap_filter, attributes)

    monkeypatch.setattr(VzdClient, "search", counted)
    return sent


def test_typed_addresses_are_looked_up_together_not_one_search_each(client, account, sender, vzd, searches):
    client.force_login(sender)
    others = [f"kollege{i}@praxis-test.kim.telematik-test" for i in range(95)]
    typed = ", ".join([PRAXIS, NO_CERT, UNKNOWN, "kollege@gmail.com", *others])
    response = client.get(reverse("mailbox:compose-address"), {"field": "to", "to_typed": typed})
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<input type="hidden" name="to" value="{PRAXIS}">Praxis Test &lt;{PRAXIS}&gt;' in html
    assert "KIM 1.5+" in html
    assert f"{UNKNOWN}: Diese KIM-Adresse steht nicht im Verzeichnis." in html
    assert "„kollege@gmail.com“ ist keine KIM-Adresse" in html
    assert html.count("<li") == 99
    # 98 KIM addresses in batches of 40: three searches, not 98 (a slow directory would cost 98 timeouts).
    assert len(searches) == 3


def test_a_pasted_list_over_the_recipient_limit_is_refused_before_the_directory_is_asked(
    client, account, sender, vzd, searches
):
    client.force_login(sender)
    typed = "\n".join(f"p{i}@praxis-test.kim.telematik-test" for i in range(5000))
    response = client.get(reverse("mailbox:compose-address"), {"field": "cc", "cc_typed": typed})
    # 422: swapped in as a chip, and the address box keeps its text (compose.js empties it after a 200 only).
    assert response.status_code == 422
    html = response.content.decode()
    assert "Höchstens 100 Empfänger je Nachricht; hier stehen 5000 Adressen. Bitte kürzen." in html
    assert 'name="cc"' not in html
    assert searches == []


def test_typed_addresses_while_the_directory_is_down_are_kept_unchecked(client, account, sender, vzd_down):
    client.force_login(sender)
    typed = f"{PRAXIS}, {UNKNOWN}, kollege@gmail.com"
    html = client.get(reverse("mailbox:compose-address"), {"field": "to", "to_typed": typed}).content.decode()
    assert f'<input type="hidden" name="to" value="{PRAXIS}">' in html
    assert f'<input type="hidden" name="to" value="{UNKNOWN}">' in html
    assert html.count("Verzeichnis nicht erreichbar – wird vor dem Senden geprüft") == 2
    assert "„kollege@gmail.com“ ist keine KIM-Adresse" in html


def test_a_draft_to_more_recipients_than_a_message_may_go_to_is_refused_before_the_directory_is_asked(
    cm, account, sender, vzd, searches, sent_tasks
):
    # A reply-all to a long list, or chips added a hundred at a time: the draft holds them (its text is saved),
    # sending refuses them in German, at once, without asking the directory for each address.
    many = [PRAXIS, *(f"p{i}@praxis-test.kim.telematik-test" for i in range(100))]
    draft = _draft(sender, account, *many)
    assert len(draft.recipients) == 101
    with pytest.raises(PreflightFailed) as failed:
        outgoing_send(user=sender, draft=draft, version=draft.version)
    assert [(p.address, p.reason) for p in failed.value.problems] == [
        ("", "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 101. Bitte entfernen Sie 1.")
    ]
    assert searches == [] and sent_tasks == [] and cm.sent_messages() == []
    draft.refresh_from_db()
    assert draft.state == OutgoingMessage.State.DRAFT
    # One fewer, and it goes through the directory as always.
    assert outgoing_preflight(user=sender, draft=_draft(sender, account, *many[:100]))[0].reason.startswith("p0@")
