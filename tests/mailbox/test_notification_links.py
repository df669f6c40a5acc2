"""The notifications page: a notification about a draft (to sign, to review, returned, approved) leads to the
draft's page (signing registers the link; mailbox does not import signing). The page behind the link checks
permission itself: a user who may not see the draft gets 404 there, and the notifications page shows nothing of
the draft beyond the notification's own text."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import translation

from mailbox.models import Membership, Notification
from mailbox.services.ingest import message_ingest
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.review import review_approve, review_request, review_return
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _links(page: str) -> list[str]:
    """The links of the notification list, in order."""
    listing = re.search(r'<ul class="notification-list">(.*?)</ul>', page, re.S)
    assert listing is not None
    return re.findall(r'<a href="([^"]+)"', listing.group(1))


def _page(user) -> str:
    response = _client(user).get(reverse("mailbox:notifications"))
    assert response.status_code == 200
    return response.content.decode()


def _people():
    box = MailboxFactory()
    author = UserFactory(username="assistenz")
    signer = UserFactory(username="aerztin")
    reviewer = UserFactory(username="oberarzt")
    for user in (author, signer, reviewer):
        MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=signer)
    reviewer.user_permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))
    return box, author, signer, reviewer


def _draft(box, author, signer, subject="Entlassbrief Muster"):
    data = DraftData(
        document_type="eau",
        patient_reference="Patientin Xylander",
        signer=signer,
        mailbox=box,
        subject=subject,
        recipients=["kasse@kasse-test.kim.telematik-test"],
    )
    return draft_create(author=author, data=data, document=document_check(b"AU\n", "au.txt"))


def test_a_request_to_sign_reads_in_the_signer_language():
    box, author, signer, _reviewer = _people()
    author.first_name, author.last_name = "Anna", "Assistenz"
    author.save()
    with translation.override("en"):
        _draft(box, author, signer)  # asked while the author's page was in English: stored without a language

    client = _client(signer)
    german = client.get(reverse("mailbox:notifications")).content.decode()
    assert "Anna Assistenz bittet um Ihre Signatur: Entlassbrief Muster (Patientin Xylander)" in german
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    english = client.get(reverse("mailbox:notifications")).content.decode()
    assert "Anna Assistenz asks for your signature: Entlassbrief Muster (Patientin Xylander)" in english
    assert "bittet um Ihre Signatur" not in english


def test_every_signing_notification_leads_to_its_draft():
    box, author, signer, reviewer = _people()
    draft = _draft(box, author, signer)
    url = reverse("signing:draft-detail", args=[draft.pk])
    # To sign.
    assert Notification.objects.get(user=signer, kind=Notification.Kind.SIGNING_QUEUED).params["draft"] == draft.pk
    assert _links(_page(signer)) == [url]
    assert _client(signer).get(url).status_code == 200
    # To review, then approved (author and signer are told).
    draft = review_request(user=author, draft=draft, version=draft.version, reviewer=reviewer)
    assert Notification.objects.filter(user=reviewer, kind=Notification.Kind.REVIEW_REQUESTED).exists()
    assert _links(_page(reviewer)) == [url]
    assert _client(reviewer).get(url).status_code == 200
    review_approve(user=reviewer, draft=draft, version=draft.version)
    assert Notification.objects.filter(user=author, kind=Notification.Kind.REVIEW_APPROVED).exists()
    assert _links(_page(author)) == [url]
    # Returned: a second draft.
    second = _draft(box, author, signer, subject="Arztbrief Beispiel")
    second = review_request(user=author, draft=second, version=second.version, reviewer=reviewer)
    review_return(user=reviewer, draft=second, version=second.version, comment="Diagnose fehlt")
    assert Notification.objects.filter(user=author, kind=Notification.Kind.REVIEW_RETURNED).exists()
    second_url = reverse("signing:draft-detail", args=[second.pk])
    assert _links(_page(author)) == [second_url, url]
    assert _client(author).get(second_url).status_code == 200


def test_a_user_who_cannot_see_the_draft_gets_404_behind_the_link_and_nothing_on_the_page():
    box, author, signer, reviewer = _people()
    draft = _draft(box, author, signer, subject="Befund Geheim")
    url = reverse("signing:draft-detail", args=[draft.pk])
    # A stranger with a notification naming the draft (e.g. a forged or stale row): the page shows its own text.
    stranger = UserFactory(username="fremd")
    Notification.objects.create(
        user=stranger, kind=Notification.Kind.SIGNING_QUEUED, params={"draft": draft.pk}, text="Bitte signieren"
    )
    page = _page(stranger)
    assert "Bitte signieren" in page and "Befund Geheim" not in page and "Xylander" not in page
    assert _client(stranger).get(url).status_code == 404
    # The reviewer who left the mailbox: the link stays, the draft is 404 for them now.
    draft = review_request(user=author, draft=draft, version=draft.version, reviewer=reviewer)
    assert _links(_page(reviewer)) == [url]
    Membership.objects.filter(mailbox=box, user=reviewer).delete()
    assert _client(reviewer).get(url).status_code == 404


@pytest.mark.parametrize("params", [{}, {"draft": "7"}, {"draft": True}, {"draft": -3}, {"draft": [1]}, {"x": 1}])
def test_odd_params_show_the_text_without_a_link(params):
    user = UserFactory()
    Notification.objects.create(user=user, kind=Notification.Kind.REVIEW_RETURNED, params=params, text="Zurück")
    page = _page(user)
    assert "Zurück" in page and _links(page) == []


def test_message_notifications_still_lead_to_their_message():
    box = MailboxFactory()
    user = UserFactory()
    MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="a", raw=simple_mail("Befund"))
    Notification.objects.create(user=user, kind=Notification.Kind.ASSIGNED, message=message, text="Zugewiesen")
    assert _links(_page(user)) == [reverse("mailbox:message-detail", args=[message.pk])]
