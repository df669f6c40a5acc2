"""Seed the demo's signing queue: aerztin's eHBA, the workstation with the PIN pad, and letters to sign; and the
review before signature: Kardiologie has its eArztbriefe reviewed, aerztin may review (signing.review_draft),
and the resident `assistenz` (member of Kardiologie, no eHBA) may prepare letters.

Run after ``demo_seed`` (users and mailboxes) on every start of the demo. Idempotent: the card, the workplace,
the rule and the resident are set only when missing or different, and each demo letter is created only when no
copy of it is waiting in the queue — so a restarted demo again has its dozen letters to sign, never two of the
same. The seeded eArztbriefe come approved by aerztin (seeded as reviewed), so they stay signable at once; the
review round itself is shown with the eArztbriefe the KIS posts.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mailbox.models import Mailbox, Membership
from signing.management.demo_letters import demo_letters
from signing.models import Draft, ReviewRule, SignerCard, Workplace
from signing.services.cards import signer_card_set, workplace_save
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.review import review_approve, review_rule_set

# As the simulated Konnektor's demo cards say (tisim konnektor-run, konnektor-cards.json).
TELEMATIK_ID = "1-20014567890"
WORKPLACE_ID = "Arbeitsplatz-1"
WORKPLACE_LABEL = "Station 3, Arztzimmer"
CT_ID = "CT-1"
KARDIOLOGIE = "kardiologie@klinikum-demo.kim.telematik-test"
# Drafts in these states are still in (or on their way through) the queue: no second copy.
WAITING = (Draft.State.DRAFT, Draft.State.FAILED, Draft.State.SIGNING)
# Kardiologie has this document type reviewed before it is signed (the demo's review rule).
REVIEWED_TYPE = "earztbrief"
# The resident who prepares letters (no eHBA): username, first name, last name.
RESIDENT = ("assistenz", "Jonas", "Neumann")


class Command(BaseCommand):
    help = "Seed the demo's signing queue (aerztin's eHBA, Arbeitsplatz-1 with CT-1, letters from station)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--signer", default="aerztin")
        parser.add_argument("--author", default="station")
        parser.add_argument("--manager", default="leitung", help="who sets the eHBA and the workplace (audited)")
        parser.add_argument("--mailbox", default=KARDIOLOGIE, help="the sending mailbox's KIM address")
        parser.add_argument("--password", default="demo", help="the resident's password when created")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        try:
            signer = users.get(username=options["signer"])
            author = users.get(username=options["author"])
            manager = users.get(username=options["manager"])
            mailbox = Mailbox.objects.get(address=options["mailbox"])
        except (get_user_model().DoesNotExist, Mailbox.DoesNotExist) as exc:
            raise CommandError(f"{exc} — run demo_seed first") from exc

        card = SignerCard.objects.filter(user=signer).first()
        if card is None or card.telematik_id != TELEMATIK_ID:
            signer_card_set(manager=manager, user=signer, telematik_id=TELEMATIK_ID, iccsn="")
        workplace = Workplace.objects.filter(workplace_id=WORKPLACE_ID).first()
        if workplace is None or (workplace.ct_id, workplace.is_active) != (CT_ID, True):
            workplace_save(
                manager=manager,
                workplace=workplace,
                workplace_id=WORKPLACE_ID,
                label=workplace.label if workplace is not None else WORKPLACE_LABEL,
                ct_id=CT_ID,
                is_active=True,
            )

        self._review_setup(signer=signer, manager=manager, mailbox=mailbox, password=options["password"])

        waiting = set(
            Draft.objects.filter(author=author, signer=signer, state__in=WAITING).values_list("subject", flat=True)
        )
        created = 0
        for letter in demo_letters():
            if letter.subject in waiting:
                continue
            data = DraftData(
                document_type=letter.document_type,
                patient_reference=letter.patient_reference,
                signer=signer,
                mailbox=mailbox,
                subject=letter.subject,
                body=letter.body,
                recipients=list(letter.recipients),
            )
            draft = draft_create(author=author, data=data, document=document_check(letter.content, letter.filename))
            if draft.review_state == Draft.Review.PENDING and draft.reviewer_id == signer.pk:
                # Seeded as reviewed: the dozen letters stay signable at once, as before the review came.
                review_approve(user=signer, draft=draft, version=draft.version)
            created += 1
        self.stdout.write(
            self.style.SUCCESS(f"signing queue seeded: {created} new letters for {signer.get_username()}")
        )

    def _review_setup(self, *, signer: Any, manager: Any, mailbox: Mailbox, password: str) -> None:
        """The reviewer's permission, the resident and the rule — each only when missing."""
        permission = Permission.objects.get(content_type__app_label="signing", codename="review_draft")
        signer.user_permissions.add(permission)
        users = get_user_model().objects
        username, first, last = RESIDENT
        resident, created = users.get_or_create(username=username, defaults={"first_name": first, "last_name": last})
        if created:
            resident.set_password(password)
            resident.save()
        Membership.objects.get_or_create(mailbox=mailbox, user=resident, defaults={"role": Membership.Role.PROCESSOR})
        if not ReviewRule.objects.filter(mailbox=mailbox, document_type=REVIEWED_TYPE).exists():
            review_rule_set(manager=manager, mailbox=mailbox, document_type=REVIEWED_TYPE, required=True)
