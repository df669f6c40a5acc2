"""Review before signature: a rule of the department puts a draft in review, the chosen reviewer approves or
returns it with a comment, the author revises, and exactly the approved version gets signed. Strangers: a
non-reviewer approving, a stale version approved, a returned draft signed, an ex-member, two tabs at once."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.models import AuditEvent
from kimportal.errors import Conflict, NotAllowed, PortalError
from mailbox.models import Mailbox, Membership, Notification
from signing.models import Draft, ReviewRule, ReviewStep, SignatureBatch
from signing.selectors import review_list_for_user
from signing.services.batch import Selected, batch_create
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create, draft_update, draft_withdraw
from signing.services.review import (
    can_review,
    draft_reviewer_candidates,
    review_approve,
    review_approve_many,
    review_request,
    review_return,
    review_rule_set,
    reviewer_candidates,
)
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.documents import LETTER_TEXT
from tests.signing.factories import SignerCardFactory
from tests.signing.support import together

pytestmark = pytest.mark.django_db


def grant_review(user) -> None:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # Batches are only started here (the worker is tested elsewhere): none reaches a broker.
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)


@pytest.fixture
def senior(physician):
    """The physician reviews (has signing.review_draft) and signs."""
    grant_review(physician)
    return physician


@pytest.fixture
def rule(mailbox, manager):
    review_rule_set(manager=manager, mailbox=mailbox, document_type="earztbrief", required=True)
    return ReviewRule.objects.get(mailbox=mailbox, document_type="earztbrief")


def _data(signer, mailbox, **overrides) -> DraftData:
    values = {
        "document_type": "earztbrief",
        "patient_reference": "Muster, Erika 1950",
        "signer": signer,
        "mailbox": mailbox,
        "subject": "Entlassbrief Muster",
        "body": "",
        "recipients": ["praxis@praxis-test.kim.telematik-test"],
    }
    values.update(overrides)
    return DraftData(**values)


def _create(author, signer, mailbox, text=LETTER_TEXT, **overrides) -> Draft:
    return draft_create(
        author=author, data=_data(signer, mailbox, **overrides), document=document_check(text, "brief.txt")
    )


def _sign(signer, workplace, draft, version=None) -> SignatureBatch:
    draft.refresh_from_db()
    return batch_create(
        signer=signer,
        workplace=workplace,
        selected=[Selected(draft.pk, version if version is not None else draft.version, draft.sha256)],
    )


# --- the round trip -------------------------------------------------------------------------------------------


def test_a_rule_puts_the_draft_in_review_with_the_signer_as_reviewer(assistant, senior, mailbox, rule):
    draft = _create(assistant, senior, mailbox)
    assert (draft.review_state, draft.reviewer_id, draft.approved_version) == ("pending", senior.pk, None)
    step = ReviewStep.objects.get(draft=draft)
    assert (step.action, step.version, step.actor_id, step.reviewer_id) == ("requested", 1, assistant.pk, senior.pk)
    # The reviewer is asked to review; the request to sign comes with the approval.
    kinds = list(Notification.objects.filter(user=senior).values_list("kind", flat=True))
    assert kinds == [Notification.Kind.REVIEW_REQUESTED]
    assert "vor der Signatur zu prüfen" in Notification.objects.get(user=senior).display_text
    assert AuditEvent.objects.filter(action="signing.review_requested", details__draft=draft.pk).exists()
    # Another document type of the same department goes straight to signature.
    other = _create(assistant, senior, mailbox, document_type="befund", subject="Befund")
    assert other.review_state == "none" and other.reviewer_id is None


def test_return_revise_approve_sign_and_a_change_after_approval_needs_approval_again(
    assistant, senior, mailbox, rule, workplace
):
    draft = _create(assistant, senior, mailbox)
    returned = review_return(user=senior, draft=draft, version=1, comment="Bitte Medikation ergänzen.")
    assert returned.review_state == "returned"
    note = Notification.objects.get(user=assistant, kind=Notification.Kind.REVIEW_RETURNED)
    assert "Bitte Medikation ergänzen." in note.display_text and "zur Überarbeitung zurückgegeben" in note.display_text
    # Returned: not signable.
    with pytest.raises(Conflict, match="Noch nicht freigegeben"):
        _sign(senior, workplace, draft)

    revised = draft_update(
        user=assistant,
        draft=draft,
        version=1,
        data=_data(senior, mailbox),
        document=document_check(LETTER_TEXT + b"Medikation: ASS 100\n", "brief.txt"),
        comment="Medikation ergänzt",
    )
    assert (revised.version, revised.review_state, revised.reviewer_id) == (2, "pending", senior.pk)
    assert Notification.objects.filter(user=senior, kind=Notification.Kind.REVIEW_REQUESTED).count() == 2
    review_approve(user=senior, draft=revised, version=2)
    assert Notification.objects.filter(user=assistant, kind=Notification.Kind.REVIEW_APPROVED).exists()

    # Approved at 2, then changed by the signer: version 3 is in review again and cannot be signed ...
    changed = draft_update(
        user=senior, draft=revised, version=2, data=_data(senior, mailbox, subject="Entlassbrief Muster (final)")
    )
    assert (changed.version, changed.review_state, changed.approved_version) == (3, "pending", None)
    with pytest.raises(Conflict, match="Noch nicht freigegeben"):
        _sign(senior, workplace, changed)
    # ... a form still carrying version 2 is refused too (changed since the page showed it).
    with pytest.raises(Conflict):
        _sign(senior, workplace, changed, version=2)
    assert not SignatureBatch.objects.exists()

    # The signer made version 3: another qualified member approves it (four eyes on every version).
    colleague = UserFactory(username="oberarzt")
    MembershipFactory(mailbox=mailbox, user=colleague, role=Membership.Role.PROCESSOR)
    grant_review(colleague)
    review_request(user=assistant, draft=changed, version=3, reviewer=colleague)
    review_approve(user=colleague, draft=changed, version=3)
    batch = _sign(senior, workplace, changed)
    item = batch.items.get()
    assert (item.document_version, Draft.objects.get(pk=draft.pk).state) == (3, "signing")
    actions = list(ReviewStep.objects.filter(draft=draft).values_list("action", "version"))
    assert actions == [
        ("requested", 1),
        ("returned", 1),
        ("requested", 2),
        ("approved", 2),
        ("requested", 3),
        ("requested", 3),
        ("approved", 3),
    ]
    audited = set(AuditEvent.objects.filter(details__draft=draft.pk).values_list("action", flat=True))
    assert {"signing.review_requested", "signing.review_returned", "signing.review_approved"} <= audited


def test_an_approval_at_an_older_version_does_not_sign_the_newer(assistant, senior, mailbox, rule, workplace):
    """Defence in depth: even if the approval's version were left standing, the batch compares it."""
    draft = _create(assistant, senior, mailbox)
    review_approve(user=senior, draft=draft, version=1)
    Draft.objects.filter(pk=draft.pk).update(version=2)  # a change that (wrongly) kept the approval
    with pytest.raises(Conflict, match="Noch nicht freigegeben"):
        _sign(senior, workplace, draft)


# --- strangers ------------------------------------------------------------------------------------------------


def test_only_the_chosen_qualified_reviewer_approves(assistant, senior, mailbox, rule, stranger):
    draft = _create(assistant, senior, mailbox)
    # The author, a stranger, and another qualified member who was not chosen.
    colleague = UserFactory(username="oberarzt")
    MembershipFactory(mailbox=mailbox, user=colleague, role=Membership.Role.PROCESSOR)
    grant_review(colleague)
    for user in (assistant, stranger, colleague):
        with pytest.raises(NotAllowed):
            review_approve(user=user, draft=draft, version=1)
        with pytest.raises(NotAllowed):
            review_return(user=user, draft=draft, version=1, comment="nein")
    # The chosen reviewer whose permission was taken away.
    senior.user_permissions.clear()
    with pytest.raises(NotAllowed):
        review_approve(user=senior, draft=draft, version=1)
    assert Draft.objects.get(pk=draft.pk).review_state == "pending"
    assert not ReviewStep.objects.filter(action="approved").exists()


def test_the_author_is_never_the_reviewer(assistant, senior, mailbox, rule):
    grant_review(assistant)
    draft = _create(assistant, senior, mailbox)
    assert assistant not in reviewer_candidates(mailbox, author=assistant)
    with pytest.raises(PortalError, match="nicht prüfen"):
        review_request(user=assistant, draft=draft, version=1, reviewer=assistant)
    # Nor when the author is also the signer and a reviewer: then someone else has to be chosen.
    own = _create(senior, senior, mailbox, subject="Eigener Brief")
    assert own.review_state == "pending" and own.reviewer_id is None


def test_a_signer_who_changes_the_draft_does_not_approve_their_own_change(assistant, senior, mailbox, rule, workplace):
    """The signer may edit the letter, but the version they made is approved by someone else (four eyes on every
    version): not by approving it as its default reviewer, nor by choosing themselves."""
    draft = _create(assistant, senior, mailbox)
    changed = draft_update(user=senior, draft=draft, version=1, data=_data(senior, mailbox, subject="Geändert"))
    assert changed.review_state == "pending" and changed.reviewer_id is None
    with pytest.raises(NotAllowed):
        review_approve(user=senior, draft=changed, version=2)
    with pytest.raises(PortalError, match="nicht prüfen"):
        review_request(user=senior, draft=changed, version=2, reviewer=senior)
    changed.refresh_from_db()
    assert not can_review(senior, changed) and senior not in draft_reviewer_candidates(changed)
    with pytest.raises(PortalError):
        _sign(senior, workplace, changed)
    # Another qualified member approves the signer's version; then the signer signs it.
    colleague = UserFactory(username="oberarzt")
    MembershipFactory(mailbox=mailbox, user=colleague, role=Membership.Role.PROCESSOR)
    grant_review(colleague)
    review_request(user=senior, draft=changed, version=2, reviewer=colleague)
    assert review_approve(user=colleague, draft=changed, version=2).approved_version == 2
    assert _sign(senior, workplace, changed)


def test_without_a_qualified_signer_the_author_chooses_a_reviewer(assistant, physician, mailbox, rule):
    draft = _create(assistant, physician, mailbox)  # the physician lacks the permission
    assert draft.review_state == "pending" and draft.reviewer_id is None
    with pytest.raises(PortalError, match="wer prüfen soll"):
        review_request(user=assistant, draft=draft, version=1)
    chief = UserFactory(username="chefarzt")
    MembershipFactory(mailbox=mailbox, user=chief, role=Membership.Role.PROCESSOR)
    grant_review(chief)
    # An observer of the mailbox with the permission is no candidate (review is processing work).
    observer = UserFactory(username="beobachter")
    MembershipFactory(mailbox=mailbox, user=observer, role=Membership.Role.OBSERVER)
    grant_review(observer)
    assert list(reviewer_candidates(mailbox, author=assistant)) == [chief]
    with pytest.raises(PortalError):
        review_request(user=assistant, draft=draft, version=1, reviewer=observer)
    review_request(user=assistant, draft=draft, version=1, reviewer=chief, comment="Bitte heute noch")
    assert Notification.objects.get(user=chief).params["note"] == "Bitte heute noch"
    review_approve(user=chief, draft=draft, version=1)
    assert Draft.objects.get(pk=draft.pk).approved_version == 1


def test_approving_a_stale_version_is_refused(assistant, senior, mailbox, rule):
    draft = _create(assistant, senior, mailbox)
    draft_update(user=assistant, draft=draft, version=1, data=_data(senior, mailbox, subject="Neu"))
    # The reviewer read version 1 in an old tab.
    with pytest.raises(Conflict, match="Fassung 2"):
        review_approve(user=senior, draft=draft, version=1)
    with pytest.raises(Conflict):
        review_return(user=senior, draft=draft, version=1, comment="x")
    current = Draft.objects.get(pk=draft.pk)
    assert (current.review_state, current.approved_version) == ("pending", None)


def test_a_returned_draft_is_not_signed_through_the_sign_form(client, assistant, senior, mailbox, rule, workplace):
    draft = _create(assistant, senior, mailbox)
    review_return(user=senior, draft=draft, version=1, comment="Diagnose fehlt")
    client.force_login(senior)
    html = client.get(reverse("signing:queue")).content.decode()
    # Not selectable, and the row says why.
    assert f'value="{draft.pk}:1:' not in html
    assert f'id="block-{draft.pk}"' in html and "Zurückgegeben" in html
    # A hand-made form carrying it anyway is refused: nothing starts.
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": f"{draft.pk}:1:{draft.sha256}"}
    )
    assert response.status_code == 302
    assert not SignatureBatch.objects.exists()
    assert Draft.objects.get(pk=draft.pk).state == "draft"
    page = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert "Diagnose fehlt" in page and 'id="sign-refusal"' in page


def test_an_ex_member_of_the_mailbox_no_longer_sees_or_approves(client, assistant, mailbox, rule):
    reviewer = UserFactory(username="oberarzt")
    membership = MembershipFactory(mailbox=mailbox, user=reviewer, role=Membership.Role.PROCESSOR)
    grant_review(reviewer)
    signer = UserFactory(username="signer")
    SignerCardFactory(user=signer)
    MembershipFactory(mailbox=mailbox, user=signer, role=Membership.Role.PROCESSOR)
    draft = _create(assistant, signer, mailbox)
    review_request(user=assistant, draft=draft, version=1, reviewer=reviewer)
    client.force_login(reviewer)
    assert client.get(reverse("signing:draft-detail", args=[draft.pk])).status_code == 200
    assert list(review_list_for_user(reviewer)) == [draft]

    membership.delete()
    assert client.get(reverse("signing:draft-detail", args=[draft.pk])).status_code == 404
    assert client.get(reverse("signing:draft-versions", args=[draft.pk])).status_code == 404
    assert client.post(reverse("signing:review-approve", args=[draft.pk]), {"version": 1}).status_code == 404
    assert list(review_list_for_user(reviewer)) == []
    with pytest.raises(NotAllowed):
        review_approve(user=reviewer, draft=draft, version=1)
    assert Draft.objects.get(pk=draft.pk).review_state == "pending"


def test_return_needs_a_comment_and_a_huge_one_is_refused(assistant, senior, mailbox, rule):
    draft = _create(assistant, senior, mailbox)
    with pytest.raises(PortalError, match="was zu ändern ist"):
        review_return(user=senior, draft=draft, version=1, comment="   ")
    with pytest.raises(PortalError, match="zu lang"):
        review_return(user=senior, draft=draft, version=1, comment="x" * 5000)
    assert Draft.objects.get(pk=draft.pk).review_state == "pending"


def test_approving_twice_changes_nothing_and_returning_an_approved_draft_is_refused(assistant, senior, mailbox, rule):
    draft = _create(assistant, senior, mailbox)
    review_approve(user=senior, draft=draft, version=1)
    review_approve(user=senior, draft=draft, version=1)
    assert ReviewStep.objects.filter(action="approved").count() == 1
    # Only for the reviewer: the author "approving" the approved draft is refused, not told it was approved.
    with pytest.raises(NotAllowed):
        review_approve(user=assistant, draft=draft, version=1)
    with pytest.raises(Conflict):
        review_return(user=senior, draft=draft, version=1, comment="doch nicht")
    with pytest.raises(Conflict, match="bereits freigegeben"):
        review_request(user=assistant, draft=draft, version=1)


def test_approve_many_is_all_or_nothing(assistant, senior, mailbox, rule):
    a = _create(assistant, senior, mailbox, subject="A")
    b = _create(assistant, senior, mailbox, subject="B")
    draft_update(user=assistant, draft=b, version=1, data=_data(senior, mailbox, subject="B2"))
    with pytest.raises(Conflict):
        review_approve_many(user=senior, selected=[(a.pk, 1), (b.pk, 1)])
    assert not ReviewStep.objects.filter(action="approved").exists()
    approved = review_approve_many(user=senior, selected=[(a.pk, 1), (b.pk, 2)])
    assert sorted(d.approved_version for d in approved) == [1, 2]
    # A draft the user cannot see is refused as a whole.
    foreign = _create(assistant, senior, mailbox, subject="C")
    with pytest.raises(NotAllowed):
        review_approve_many(user=assistant, selected=[(foreign.pk, 1)])


def test_review_queue_page_approves_the_selection(client, assistant, senior, mailbox, rule):
    drafts = [_create(assistant, senior, mailbox, subject=f"Brief {n}") for n in range(3)]
    client.force_login(senior)
    html = client.get(reverse("signing:review-queue")).content.decode()
    for d in drafts:
        assert f'value="{d.pk}:1"' in html
    response = client.post(reverse("signing:review-queue"), {"draft": [f"{d.pk}:1" for d in drafts[:2]]})
    assert response.status_code == 302
    states = dict(Draft.objects.values_list("pk", "review_state"))
    assert [states[d.pk] for d in drafts] == ["approved", "approved", "pending"]
    # A malformed selection changes nothing.
    client.post(reverse("signing:review-queue"), {"draft": [f"{drafts[2].pk}:x"]})
    assert Draft.objects.get(pk=drafts[2].pk).review_state == "pending"


def test_detail_page_return_and_approve_through_the_forms(client, assistant, senior, mailbox, rule):
    draft = _create(assistant, senior, mailbox)
    client.force_login(senior)
    page = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert 'id="review-approve"' in page and 'id="review-return"' in page
    client.post(reverse("signing:review-return", args=[draft.pk]), {"version": 1, "comment": "Befund fehlt"})
    assert Draft.objects.get(pk=draft.pk).review_state == "returned"
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert "Befund fehlt" in page and 'id="review-approve"' not in page
    # The author cannot approve through a hand-made post either.
    client.post(reverse("signing:review-approve", args=[draft.pk]), {"version": 1})
    assert Draft.objects.get(pk=draft.pk).review_state == "returned"


def test_withdraw_takes_the_draft_out_and_is_refused_once_signing(assistant, senior, mailbox, rule, workplace):
    draft = _create(assistant, senior, mailbox)
    withdrawn = draft_withdraw(user=assistant, draft=draft, via="KIS: Test", reason="Patient verlegt")
    assert withdrawn.state == Draft.State.WITHDRAWN and withdrawn.get_state_display() == "zurückgezogen"
    event = AuditEvent.objects.get(action="signing.draft_withdrawn")
    assert event.details["via"] == "KIS: Test" and event.details["reason"] == "Patient verlegt"
    assert list(review_list_for_user(senior)) == []
    with pytest.raises(NotAllowed):
        draft_update(user=assistant, draft=draft, version=1, data=_data(senior, mailbox, subject="x"))
    with pytest.raises(NotAllowed):
        review_approve(user=senior, draft=draft, version=1)
    # Again: nothing changes. Once signing: refused.
    draft_withdraw(user=assistant, draft=draft)
    assert AuditEvent.objects.filter(action="signing.draft_withdrawn").count() == 1
    other = _create(assistant, senior, mailbox, document_type="befund")
    _sign(senior, workplace, other)
    with pytest.raises(NotAllowed):
        draft_withdraw(user=assistant, draft=other)


def test_rules_are_set_by_managers_on_their_page_and_audited(client, manager, mailbox, assistant):
    client.force_login(assistant)
    assert client.get(reverse("signing:review-rules")).status_code == 404
    with pytest.raises(NotAllowed):
        review_rule_set(manager=assistant, mailbox=mailbox, document_type="earztbrief", required=True)
    client.force_login(manager)
    assert client.get(reverse("signing:review-rules")).status_code == 200
    client.post(reverse("signing:review-rules"), {"mailbox": mailbox.pk, "document_type": "earztbrief"})
    rule = ReviewRule.objects.get()
    assert (rule.mailbox_id, rule.document_type, rule.created_by_id) == (mailbox.pk, "earztbrief", manager.pk)
    event = AuditEvent.objects.get(action="signing.review_rule_added")
    assert event.mailbox_id == mailbox.pk and event.details["document_type"] == "earztbrief"
    # An unknown type, a personal mailbox: refused, nothing stored.
    response = client.post(reverse("signing:review-rules"), {"mailbox": mailbox.pk, "document_type": "nope"})
    assert response.status_code == 422
    personal = MailboxFactory(kind=Mailbox.Kind.PERSONAL)
    with pytest.raises(PortalError):
        review_rule_set(manager=manager, mailbox=personal, document_type="earztbrief", required=True)
    client.post(reverse("signing:review-rule-remove", args=[rule.pk]))
    assert not ReviewRule.objects.exists()
    assert AuditEvent.objects.filter(action="signing.review_rule_removed").count() == 1


def test_queue_and_list_show_the_review_state(client, assistant, senior, mailbox, rule, workplace):
    pending = _create(assistant, senior, mailbox, subject="In Prüfung")
    returned = _create(assistant, senior, mailbox, subject="Zurück")
    review_return(user=senior, draft=returned, version=1, comment="x")
    approved = _create(assistant, senior, mailbox, subject="Frei")
    review_approve(user=senior, draft=approved, version=1)
    client.force_login(senior)
    html = client.get(reverse("signing:queue")).content.decode()
    assert 'data-review="pending">in Prüfung' in html
    assert 'data-review="returned">zurückgegeben' in html
    assert 'data-review="approved">freigegeben' in html
    assert f'value="{approved.pk}:1:{approved.sha256}"' in html
    assert f'value="{pending.pk}:1:' not in html and f'id="block-{pending.pk}"' in html
    filtered = client.get(reverse("signing:drafts"), {"review": "returned"}).content.decode()
    assert "Zurück" in filtered and "In Prüfung" not in filtered
    draft_withdraw(user=assistant, draft=pending)
    every = client.get(reverse("signing:drafts"), {"state": "all"}).content.decode()
    assert 'data-state="withdrawn">zurückgezogen' in every


# --- two tabs at once (PostgreSQL, real threads) --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_tabs_approving_at_once_approve_once(assistant, senior, mailbox, manager):
    review_rule_set(manager=manager, mailbox=mailbox, document_type="earztbrief", required=True)
    for n in range(5):
        draft = _create(assistant, senior, mailbox, subject=f"Brief {n}")
        answers = together(*(lambda d=draft: review_approve(user=senior, draft=d, version=1) for _ in range(2)))
        assert all(isinstance(a, Draft) for a in answers), answers
        assert ReviewStep.objects.filter(draft=draft, action="approved").count() == 1
        assert AuditEvent.objects.filter(action="signing.review_approved", details__draft=draft.pk).count() == 1
        assert Notification.objects.filter(kind=Notification.Kind.REVIEW_APPROVED, params__draft=draft.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_approve_and_return_at_once_one_wins(assistant, senior, mailbox, manager):
    review_rule_set(manager=manager, mailbox=mailbox, document_type="earztbrief", required=True)
    draft = _create(assistant, senior, mailbox)
    answers = together(
        lambda: review_approve(user=senior, draft=draft, version=1),
        lambda: review_return(user=senior, draft=draft, version=1, comment="nein"),
    )
    won = [a for a in answers if isinstance(a, Draft)]
    lost = [a for a in answers if isinstance(a, Conflict)]
    assert len(won) == 1 and len(lost) == 1, answers
    assert ReviewStep.objects.filter(draft=draft).exclude(action="requested").count() == 1
    assert Draft.objects.get(pk=draft.pk).review_state == won[0].review_state


# --- the demo -------------------------------------------------------------------------------------------------


def test_demo_seed_keeps_its_letters_signable_and_sets_up_the_review(workplace):
    from django.core.management import call_command

    kardiologie = MailboxFactory(address="kardiologie@klinikum-demo.kim.telematik-test", kind=Mailbox.Kind.FUNCTIONAL)
    users = {name: UserFactory(username=name) for name in ("station", "aerztin", "leitung")}
    users["leitung"].user_permissions.add(Permission.objects.get(codename="manage_house"))
    for name in ("station", "aerztin"):
        MembershipFactory(mailbox=kardiologie, user=users[name], role=Membership.Role.PROCESSOR)
    call_command("signing_demo_seed")
    call_command("signing_demo_seed")  # a restarted demo: nothing twice

    aerztin = users["aerztin"]
    drafts = list(Draft.objects.filter(signer=aerztin))
    assert len(drafts) == 12
    assert all(not d.needs_approval and d.is_open for d in drafts)
    assert {d.review_state for d in drafts if d.document_type == "earztbrief"} == {"approved"}
    assert ReviewRule.objects.filter(mailbox=kardiologie, document_type="earztbrief").count() == 1
    resident = get_user_model().objects.get(username="assistenz")
    assert resident.check_password("demo")
    assert Membership.objects.filter(mailbox=kardiologie, user=resident, role="processor").exists()
    # An eArztbrief from the resident (or the KIS) waits for aerztin's review; she is a possible reviewer.
    letter = _create(resident, aerztin, kardiologie)
    assert (letter.review_state, letter.reviewer_id) == ("pending", aerztin.pk)
    review_return(user=aerztin, draft=letter, version=1, comment="Bitte Labor ergänzen")
    revised = draft_update(user=resident, draft=letter, version=1, data=_data(aerztin, kardiologie, subject="Neu"))
    review_approve(user=aerztin, draft=revised, version=2)
    assert _sign(aerztin, workplace, revised).total == 1


def test_each_step_reaches_the_pages_of_author_signer_and_reviewer_live(
    assistant, physician, mailbox, rule, monkeypatch, django_capture_on_commit_callbacks
):
    from signing import events

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "send_to_group", lambda group, event: sent.append((group, event)))
    reviewer = UserFactory(username="oberarzt")
    MembershipFactory(mailbox=mailbox, user=reviewer, role=Membership.Role.PROCESSOR)
    grant_review(reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        draft = draft_create(
            author=assistant,
            data=_data(physician, mailbox),
            document=document_check(LETTER_TEXT, "brief.txt"),
            reviewer=reviewer,
        )
    expected = {events.queue_group(u.pk) for u in (assistant, physician, reviewer)}
    assert {g for g, e in sent if draft.pk in e["draft_ids"]} == expected
    for step in (
        lambda: review_return(user=reviewer, draft=draft, version=1, comment="Bitte ergänzen"),
        lambda: review_request(user=assistant, draft=draft, version=1, comment="Unverändert, bitte erneut"),
        lambda: review_approve(user=reviewer, draft=draft, version=1),
    ):
        sent.clear()
        with django_capture_on_commit_callbacks(execute=True):
            step()
        assert {g for g, e in sent if e["type"] == "signing.drafts_changed"} == expected
    # The user's bell: a notification for each step the user is to act on or learn of.
    kinds = dict(Notification.objects.filter(user=assistant).values_list("kind", "params__note"))
    assert kinds[Notification.Kind.REVIEW_RETURNED] == "Bitte ergänzen"
    assert Notification.Kind.REVIEW_APPROVED in kinds
