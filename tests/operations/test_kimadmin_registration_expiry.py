"""A registration wizard left open (tab closed, never cancelled) does not keep its secrets for ever."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from operations.models import KimRegistration
from operations.services.kimadmin import REGISTRATION_DRAFT_MAX_AGE
from operations.tasks import kim_registrations_expire
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import KimWorld

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture


def _draft(world: KimWorld, age: dt.timedelta, state: str = KimRegistration.State.DRAFT) -> KimRegistration:
    registration = KimRegistration(
        created_by=world.manager,
        created_at=timezone.now() - age,
        state=state,
        address="alt@klinikum-test.kim.telematik-test",
        display_name="Alt",
        template_account=world.account,
        step=KimRegistration.Step.CONFIRM,
    )
    registration.set_secret("reference_id", "REF-123456")
    registration.set_secret("initial_password", "Initial-2027!")
    registration.set_secret("password", "Gewaehlt-2027!")
    registration.save()
    return registration


def test_a_draft_older_than_a_day_loses_its_secrets_and_its_page(kim: KimWorld) -> None:
    old = _draft(kim, REGISTRATION_DRAFT_MAX_AGE + dt.timedelta(minutes=1))
    young = _draft(kim, dt.timedelta(hours=1))
    registered = _draft(kim, REGISTRATION_DRAFT_MAX_AGE * 2, state=KimRegistration.State.REGISTERED)
    client = kim.client_for(kim.manager)
    # Before the task ran: the old wizard cannot be continued any more.
    assert client.get(reverse("operations:kim-register", args=[old.pk])).status_code == 404
    assert client.get(reverse("operations:kim-register", args=[young.pk])).status_code == 200

    assert kim_registrations_expire.run() == 1

    old.refresh_from_db()
    assert old.state == KimRegistration.State.ABANDONED
    assert not (old.reference_id_encrypted or old.initial_password_encrypted or old.password_encrypted)
    young.refresh_from_db()
    assert young.state == KimRegistration.State.DRAFT and young.get_secret("reference_id") == "REF-123456"
    # Registered at the provider: its password is still needed to create the mailbox.
    registered.refresh_from_db()
    assert registered.get_secret("password") == "Gewaehlt-2027!"


def test_beat_schedules_the_expiry() -> None:
    from kimportal.celery import app

    app.loader.import_default_modules()
    app.finalize()
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert schedule["operations.tasks.kim_registrations_expire"]["schedule"] <= 3600
    assert "operations.tasks.kim_registrations_expire" in app.tasks
