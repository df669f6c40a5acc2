"""Why a password change was refused or is uncertain is kept untranslated and shown in the reader's language.

The change is settled by whoever comes first: the request that made it, Celery beat, a colleague's visit, each in a
language of its own. So the row keeps the msgid and its parameters (kimportal.texts) and the KIM pages translate.
Rows written before keep their German sentence and show it as it is.
"""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import translation

from operations.models import PasswordChange
from operations.tasks import kim_password_changes_settle
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import NEW_PASSWORD, KimWorld

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture

POLICY_DE = "Das neue Passwort entspricht nicht den Passwortregeln des Anbieters."
POLICY_EN = "The new password does not meet the provider's password rules."
LOGIN_TEST_DE = "Der Anbieter hat die Änderung nicht übernommen (Anmeldetest mit dem bisherigen Passwort)."


def _english(msgid: str) -> str:
    with translation.override("en"):
        return translation.gettext(msgid)


def _in(client: Any, language: str | None) -> Any:
    if language is None:
        client.cookies.pop(settings.LANGUAGE_COOKIE_NAME, None)
    else:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def _account_page(world: KimWorld, *, language: str | None) -> str:
    client = _in(world.client_for(world.owner), language)
    response = client.get(reverse("operations:kim-account", args=[world.mailbox.pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _last_change_row(page: str) -> str:
    return page.split('id="kim-last-password-change">', 1)[1].split("</td>", 1)[0]


def test_a_refused_change_says_why_in_the_reader_language(kim: KimWorld) -> None:
    assert _english(POLICY_DE) == POLICY_EN  # the translation the page must show
    kim.am.am.arm_fault("status", status=420, path="/AccountMgmt/")
    client = _in(kim.client_for(kim.owner), "en")  # made in English: what is kept must not depend on that
    url = reverse("operations:kim-password", args=[kim.mailbox.pk])
    response = client.post(url, {"password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD})
    assert response.status_code == 422

    change = PasswordChange.objects.get()
    assert change.state == PasswordChange.State.REJECTED
    assert change.outcome == {"msgid": POLICY_DE, "params": {}}
    english = _last_change_row(_account_page(kim, language="en"))
    assert "not changed" in english and POLICY_EN in english and "Passwortregeln" not in english
    german = _last_change_row(_account_page(kim, language=None))
    assert "nicht geändert" in german and POLICY_DE in german and "password rules" not in german


def test_a_change_settled_by_the_worker_reads_in_german_and_in_english(kim: KimWorld) -> None:
    # A change left open (the provider never got it) and settled later by Celery beat, which runs in English here.
    from datetime import timedelta

    from django.utils import timezone

    from mailbox import crypto
    from mailbox.models import KimAccount

    account = KimAccount.objects.get(pk=kim.account.pk)
    PasswordChange.objects.create(
        account=account,
        requested_by=kim.owner,
        requested_at=timezone.now() - timedelta(hours=2),
        new_password_encrypted=crypto.encrypt(NEW_PASSWORD),
        old_password_encrypted=account.password_encrypted,
    )
    with translation.override("en"):
        assert kim_password_changes_settle.run()["rejected"] == 1

    assert PasswordChange.objects.get().outcome == {"msgid": LOGIN_TEST_DE, "params": {}}
    assert _english(LOGIN_TEST_DE) in _last_change_row(_account_page(kim, language="en"))
    german = _last_change_row(_account_page(kim, language="de"))
    assert LOGIN_TEST_DE in german and _english(LOGIN_TEST_DE) not in german


def test_an_open_change_says_why_it_is_uncertain_in_the_reader_language(kim: KimWorld) -> None:
    from mailbox.models import KimAccount

    uncertain = "Weder das neue noch das bisherige Passwort ließ sich am Clientmodul prüfen."
    PasswordChange.objects.create(
        account=KimAccount.objects.get(pk=kim.account.pk),
        requested_by=kim.owner,
        state=PasswordChange.State.UNCERTAIN,
        outcome={"msgid": uncertain, "params": {}},
    )
    # The CM cannot tell (stopped): the change stays open, its reason is shown with the badge.
    kim.cm.stop()
    client = _in(kim.client_for(kim.owner), "en")
    page = html.unescape(client.get(reverse("operations:kim-password", args=[kim.mailbox.pk])).content.decode())
    badge = page.split('id="kim-open-change">', 1)[1].split("</p>", 1)[0]
    assert _english(uncertain) in badge and uncertain not in badge


BEFORE = ("operations", "0001_kimadmin")


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_keep_their_sentence_and_the_way_back_writes_german(kim: KimWorld) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("operations", "PasswordChange")
    sentence = "Der Anbieter hat die Änderung abgelehnt (alter Wortlaut)."
    legacy = old.objects.create(account_id=kim.account.pk, state="rejected", outcome=sentence)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert PasswordChange.objects.get(pk=legacy.pk).outcome == sentence
    for language in ("en", "de"):
        assert sentence in _last_change_row(_account_page(kim, language=language))

    # Backwards: a stored text becomes the German sentence the code before wrote; a sentence stays as it was.
    PasswordChange.objects.filter(pk=legacy.pk).update(outcome={"msgid": LOGIN_TEST_DE, "params": {}})
    PasswordChange.objects.create(account_id=kim.account.pk, state="rejected", outcome=sentence)
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("operations", "PasswordChange")
    assert sorted(old.objects.values_list("outcome", flat=True)) == sorted([LOGIN_TEST_DE, sentence])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_error_keeps_the_msgid_beside_its_text_and_through_pickling() -> None:
    import pickle

    from operations.clients.accountmanager import STATUS_TEXTS, AccountManagerError, PasswordPolicyError

    with translation.override("en"):
        error = AccountManagerError(423, "http_423", STATUS_TEXTS[423])
        policy = PasswordPolicyError("Mindestens 12 Zeichen.")
    assert error.text.startswith("The ") and error.stored["msgid"].startswith("Der Eintrag im Verzeichnisdienst")
    assert pickle.loads(pickle.dumps(error)).stored == error.stored  # noqa: S301 - our own bytes
    # The provider's own description of its rules is kept as it came, after the portal's sentence.
    assert policy.stored == [{"msgid": POLICY_DE, "params": {}}, "Mindestens 12 Zeichen."]
    assert policy.text == f"{POLICY_EN} Mindestens 12 Zeichen."


def test_an_undecryptable_stored_password_is_kept_as_msgid_whoever_asked(monkeypatch) -> None:
    # Asked in English, it must not be stored in English: the row is read later in the reader's language.
    from mailbox import crypto
    from operations.clients.accountmanager import AccountManagerError
    from operations.services import amauth, kimadmin

    def undecryptable(account):
        raise crypto.CredentialDecryptionError("key changed")

    monkeypatch.setattr(amauth, "account_manager_client", undecryptable)
    with translation.override("en"), pytest.raises(AccountManagerError) as caught, kimadmin._client(object()):
        pass
    assert caught.value.stored["msgid"].startswith("Das gespeicherte Passwort des KIM-Kontos")
