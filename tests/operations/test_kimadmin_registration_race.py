"""The registration wizard's last step clicked twice (or in two tabs) while the provider is still answering."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mailbox.models import Mailbox
from operations.models import KimRegistration
from operations.services import kimadmin
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import KimWorld
from tests.operations.test_kimadmin_registration import NEW, _through_step_3

kim = kimadmin_world.kim  # the fixture


def test_a_second_click_while_the_provider_registers_is_refused_and_the_code_is_sent_once(
    kim: KimWorld, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    registration = _through_step_3(kim, kim.client_for(kim.manager))
    original = kim.am.am.register
    calls: list[int] = []
    at_provider, go_on = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the first click is held at the provider
            at_provider.set()
            assert go_on.wait(timeout=30)
        original(*args, **kwargs)

    monkeypatch.setattr(kim.am.am, "register", held)
    outcome: dict[str, Any] = {}

    def first_click() -> None:
        try:
            outcome["first"] = kimadmin.registration_complete(
                user=kim.manager, registration=KimRegistration.objects.get(pk=registration.pk)
            )
        except Exception as exc:  # reported below
            outcome["first"] = exc
        finally:
            from django.db import connection as thread_connection

            thread_connection.close()

    thread = threading.Thread(target=first_click)
    thread.start()
    try:
        assert at_provider.wait(timeout=30)
        second = KimRegistration.objects.get(pk=registration.pk)  # still a draft, as the second tab saw it
        with pytest.raises(kimadmin.KimAdminError, match="gerade schon abgeschickt"):
            kimadmin.registration_complete(user=kim.manager, registration=second)
        # Cancelling now would wipe secrets that are in use: refused too.
        with pytest.raises(kimadmin.KimAdminError, match="gerade abgeschickt"):
            kimadmin.registration_abandon(user=kim.manager, registration=second)
    finally:
        go_on.set()
        thread.join(timeout=60)
    assert isinstance(outcome["first"], kimadmin.RegistrationResult), outcome
    assert len(calls) == 1
    registration.refresh_from_db()
    assert registration.state == KimRegistration.State.DONE
    assert Mailbox.objects.filter(address=NEW).count() == 1
    # A late click on the finished registration says so and creates nothing.
    with pytest.raises(kimadmin.KimAdminError, match="schon abgeschlossen"):
        kimadmin.registration_complete(user=kim.manager, registration=registration)
