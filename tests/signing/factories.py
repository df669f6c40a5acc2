from __future__ import annotations

import factory

from mailbox.models import Membership
from mailbox.storage import blob_put
from signing.models import Draft, SignerCard, Workplace
from tests.mailbox.factories import MailboxFactory, UserFactory
from tests.signing.documents import make_pdf


class SignerCardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SignerCard

    user = factory.SubFactory(UserFactory)
    telematik_id = factory.Sequence(lambda n: f"1-HBA-Testkarte-{n:04d}")


class WorkplaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workplace
        django_get_or_create = ["workplace_id"]

    workplace_id = "Arbeitsplatz-1"
    label = "Station 3, Arztzimmer"
    ct_id = "CT-1"


class DraftFactory(factory.django.DjangoModelFactory):
    """A draft whose document is really in the blob store (PDF unless `content` and `mime_type` say otherwise)."""

    class Meta:
        model = Draft
        skip_postgeneration_save = True

    class Params:
        content = factory.LazyAttribute(lambda o: make_pdf(f"Brief {o.subject}"))

    document_type = "earztbrief"
    patient_reference = factory.Sequence(lambda n: f"Patient {n:03d}")
    author = factory.SubFactory(UserFactory)
    signer = factory.SubFactory(UserFactory)
    mailbox = factory.SubFactory(MailboxFactory)
    recipients = factory.LazyFunction(lambda: ["praxis@praxis-test.kim.telematik-test"])
    subject = factory.Sequence(lambda n: f"Entlassbrief {n}")
    filename = factory.Sequence(lambda n: f"brief-{n}.pdf")
    mime_type = "application/pdf"
    size = factory.LazyAttribute(lambda o: len(o.content))
    sha256 = factory.LazyAttribute(lambda o: blob_put(o.content))

    @factory.post_generation
    def members(obj: Draft, create: bool, extracted: bool | None, **kwargs: object) -> None:
        """A draft belongs to a department its author and signer work in: both are made members (processing role)
        of its sending mailbox unless they already have a role there. `members=False` leaves them as they are."""
        if not create or extracted is False:
            return
        for user_id in {obj.author_id, obj.signer_id}:
            Membership.objects.get_or_create(
                mailbox_id=obj.mailbox_id, user_id=user_id, defaults={"role": Membership.Role.PROCESSOR}
            )


def plain_letters(n: int, *, signer, author, mailbox) -> list:
    """*n* small text letters by *author* for *signer* in *mailbox*, each with its own content."""
    return [
        DraftFactory(
            author=author,
            signer=signer,
            mailbox=mailbox,
            content=f"Arztbrief Nr. {i}\n".encode(),
            mime_type="text/plain",
            filename=f"brief-{i}.txt",
        )
        for i in range(n)
    ]
