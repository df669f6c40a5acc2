from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from mailbox.models import KimAccount, Mailbox, Membership


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = "Erika"
    last_name = factory.Sequence(lambda n: f"Muster{n}")
    password = factory.django.Password("pw-secret-123")


class MailboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Mailbox

    address = factory.Sequence(lambda n: f"station{n}@klinikum-test.kim.telematik-test")
    display_name = factory.Sequence(lambda n: f"Station {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    mailbox = factory.SubFactory(MailboxFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.PROCESSOR


class KimAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KimAccount
        skip_postgeneration_save = True

    mailbox = factory.SubFactory(MailboxFactory)
    cm_host = "127.0.0.1"
    transport = KimAccount.Transport.PLAIN
    fachdienst = "klinikum-test.kim.telematik-test:465"
    mandant_id = "Mandant1"
    client_system_id = "KIM-Portal"
    workplace_id = "AP1"
    poll_interval_seconds = 30
    timeout_seconds = 5.0

    @factory.post_generation
    def password(self, create: bool, extracted: str | None, **kwargs) -> None:
        self.set_password(extracted or "kim-secret")
        if create:
            self.save()


def admin_user_form(person, groups, *, active: bool = True) -> dict:
    """The Django admin's user change form as a browser posts it."""
    data = {
        "username": person.username,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "email": person.email,
        "groups": [group.pk for group in groups],
        "user_permissions": [],
        "date_joined_0": "2026-01-05",
        "date_joined_1": "08:00:00",
        "last_login_0": "",
        "last_login_1": "",
    }
    if active:
        data["is_active"] = "on"
    return data


def ward_with_processors(*people: tuple[str, str, str], display_name: str = "Station Kardiologie") -> tuple:
    """A ward's mailbox with these people (user name, first name, last name) as its processors: (mailbox, users)."""
    box = MailboxFactory(display_name=display_name)
    users = [UserFactory(username=name, first_name=first, last_name=last) for name, first, last in people]
    for user in users:
        MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    return box, users
