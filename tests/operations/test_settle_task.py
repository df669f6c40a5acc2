"""The beat task settles open KIM password changes without anyone visiting the mailbox's KIM pages: with the
same login test at the (simulated) Clientmodul, leaving alone a change whose request may still be running."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from mailbox import crypto
from mailbox.models import KimAccount
from operations.models import PasswordChange
from operations.services.password_settle import SETTLE_AFTER
from operations.tasks import kim_password_changes_settle
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import NEW_PASSWORD, PASSWORD, KimWorld
from tisim.accountmanager.server import ApiError

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture


def _age(change: PasswordChange, by: timedelta) -> None:
    PasswordChange.objects.filter(pk=change.pk).update(requested_at=timezone.now() - by)


def test_an_uncertain_change_is_settled_by_the_task(kim: KimWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    # The provider takes the new password and answers 500; the CM cannot be asked at that moment.
    original = kim.am.am.set_account

    def applied_then_500(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise ApiError(500, "Internal Server Error")

    monkeypatch.setattr(kim.am.am, "set_account", applied_then_500)
    ports = (kim.account.smtp_port, kim.account.pop3_port)
    KimAccount.objects.filter(pk=kim.account.pk).update(smtp_port=1, pop3_port=1)
    response = kim.client_for(kim.owner).post(
        reverse("operations:kim-password", args=[kim.mailbox.pk]),
        {"password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD},
    )
    assert response.status_code == 422
    change = PasswordChange.objects.get()
    assert change.state == PasswordChange.State.UNCERTAIN
    assert kim.cm_password() == NEW_PASSWORD and kim.stored_password() == PASSWORD

    # Still unreachable: the task tries, the change stays open (and is tried again next time).
    _age(change, SETTLE_AFTER + timedelta(seconds=1))
    assert kim_password_changes_settle.run() == {"applied": 0, "rejected": 0, "uncertain": 1, "failed": 0}
    assert PasswordChange.objects.get().state == PasswordChange.State.UNCERTAIN

    # The CM is back: the next run settles it, nobody has to open a page.
    KimAccount.objects.filter(pk=kim.account.pk).update(smtp_port=ports[0], pop3_port=ports[1])
    assert kim_password_changes_settle.run() == {"applied": 1, "rejected": 0, "uncertain": 0, "failed": 0}
    change = PasswordChange.objects.get()
    assert change.state == PasswordChange.State.APPLIED and change.settled_at is not None
    assert change.new_password_encrypted == "" and change.old_password_encrypted == ""
    assert kim.stored_password() == NEW_PASSWORD
    event = AuditEvent.objects.get(action="kim.password_changed")
    assert event.details["settled_by"] == "login_test" and event.actor_id is None
    assert event.mailbox_id == kim.mailbox.pk
    # Nothing left to do.
    assert kim_password_changes_settle.run() == {"applied": 0, "rejected": 0, "uncertain": 0, "failed": 0}


def test_a_change_the_provider_never_got_is_closed_and_a_young_one_is_left_alone(kim: KimWorld) -> None:
    account = KimAccount.objects.get(pk=kim.account.pk)
    # A worker died after writing the change, before asking the Account Manager ("pending" for good).
    stale = PasswordChange.objects.create(
        account=account,
        requested_by=kim.owner,
        new_password_encrypted=crypto.encrypt(NEW_PASSWORD),
        old_password_encrypted=account.password_encrypted,
    )
    _age(stale, timedelta(hours=2))
    # Another mailbox's change just written: its request may be on the way right now.
    foreign = KimAccount.objects.get(mailbox=kim.foreign)
    young = PasswordChange.objects.create(
        account=foreign,
        requested_by=kim.stranger,
        new_password_encrypted=crypto.encrypt(NEW_PASSWORD),
        old_password_encrypted=foreign.password_encrypted,
    )
    assert kim_password_changes_settle.run() == {"applied": 0, "rejected": 1, "uncertain": 0, "failed": 0}
    stale.refresh_from_db()
    assert stale.state == PasswordChange.State.REJECTED and stale.new_password_encrypted == ""
    assert kim.cm_password() == PASSWORD and kim.stored_password() == PASSWORD
    event = AuditEvent.objects.get(action="kim.password_change_failed")
    assert event.details["settled_by"] == "login_test" and event.mailbox_id == kim.mailbox.pk
    young.refresh_from_db()
    assert young.state == PasswordChange.State.PENDING and young.new_password() == NEW_PASSWORD


def test_beat_schedules_the_task() -> None:
    from kimportal.celery import app

    app.loader.import_default_modules()
    app.finalize()
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    entry = schedule["operations.tasks.kim_password_changes_settle"]
    assert entry["schedule"] <= 600
    assert "operations.tasks.kim_password_changes_settle" in app.tasks
