"""The managers' forms sent twice: a double click on "anlegen" creates one group or mailbox and shows it created;
the same name from a second tab is refused in German with the input kept; a routing rule edited in two tabs keeps
the first save, and the stale tab's save is refused with its input still in the form."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import Locator, Page, expect

from mailbox.models import KimAccount, Mailbox, Membership, RoutingRule
from mailbox.services.audit import AuditEvent
from mailbox.services.routing import RuleData, routing_rule_create
from tests.e2e.a11y import assert_accessible
from tests.e2e.pages import LoginPage, click_twice_while_the_first_is_answered
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e

ADDRESS = "aufnahme@klinikum-test.kim.telematik-test"


@pytest.fixture
def leitung(transactional_db):
    user = UserFactory(username="leitung", first_name="Lena", last_name="Leitung")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def _flash(page: Page) -> Locator:
    return page.locator("#flash-status")


def _rule(pk: int) -> tuple[str, str, str]:
    """Name, words in the subject and queue of the rule as stored."""
    return RoutingRule.objects.values_list("name", "subject_words", "queue__name").get(pk=pk)


def test_a_double_click_on_anlegen_creates_one_group_and_one_mailbox_and_shows_them(
    portal_web, browser_context, leitung
):
    chefin = UserFactory(username="chefin", first_name="Clara", last_name="Chefin")
    page = browser_context.new_page()
    page.set_default_timeout(10_000)
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")

    # A second tab had the groups page open before: it will send the same name later.
    other = browser_context.new_page()
    other.set_default_timeout(10_000)
    other.goto(portal_web.url + "/leitung/gruppen/")
    other.get_by_label("Name der Gruppe (Station)").fill("Station 4")

    page.goto(portal_web.url + "/leitung/gruppen/")
    page.get_by_label("Name der Gruppe (Station)").fill("Station 4")
    click_twice_while_the_first_is_answered(
        page, page.get_by_role("button", name="Gruppe anlegen"), f"{portal_web.url}/leitung/gruppen/"
    )
    group = Group.objects.get(name="Station 4")
    expect(page).to_have_url(f"{portal_web.url}/leitung/gruppen/{group.pk}/")
    expect(_flash(page)).to_have_text("Gruppe angelegt.")
    expect(page.locator("#flash-alert")).to_be_empty()
    assert AuditEvent.objects.filter(action="group.created").count() == 1
    assert_accessible(page, "the group created with a double click")

    # The other tab's save: one group still, the reason in German beside the field, the name still typed there.
    other.get_by_role("button", name="Gruppe anlegen").click()
    name = other.get_by_label("Name der Gruppe (Station)")
    expect(other.locator(".errorlist")).to_have_text("Eine Gruppe „Station 4“ gibt es schon.")
    expect(name).to_have_value("Station 4")
    assert Group.objects.filter(name__iexact="Station 4").count() == 1
    assert_accessible(other, "the group refused in the second tab")

    # The wizard: a mailbox with its KIM account and its owner, created once.
    page.goto(portal_web.url + "/leitung/postfaecher/neu/")
    wizard = page.locator("#mailbox-wizard")
    wizard.get_by_label("KIM-Adresse").fill(ADDRESS)
    wizard.get_by_label("Anzeigename").fill("Aufnahme")
    wizard.get_by_label("Eigentümer").select_option(label="Clara Chefin (chefin)")
    for field, value in {
        "cm_host": "127.0.0.1",
        "mandant_id": "M",
        "client_system_id": "CS",
        "workplace_id": "WP",
        "tls_fingerprint_sha256": "ab" * 32,
        "password": "kim-secret",
    }.items():
        wizard.locator(f"[name={field}]").fill(value)
    click_twice_while_the_first_is_answered(
        page, wizard.get_by_role("button", name="Postfach anlegen"), f"{portal_web.url}/leitung/postfaecher/neu/"
    )
    box = Mailbox.objects.get(address=ADDRESS)
    expect(page).to_have_url(f"{portal_web.url}/leitung/postfaecher/{box.pk}/")
    expect(_flash(page)).to_have_text("Postfach angelegt. Der Abruf beginnt in Kürze.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Aufnahme")
    assert Mailbox.objects.count() == 1 and KimAccount.objects.get().mailbox_id == box.pk
    owner = Membership.objects.get(mailbox=box)
    assert (owner.user_id, owner.role) == (chefin.pk, Membership.Role.OWNER)
    assert AuditEvent.objects.filter(action="mailbox.created").count() == 1
    assert_accessible(page, "the mailbox created with a double click")


def test_a_routing_rule_saved_in_two_tabs_refuses_the_stale_save_and_keeps_its_input(
    portal_web, browser_context, leitung
):
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, role=Membership.Role.OWNER, user=UserFactory(username="chefin"))
    rule = routing_rule_create(
        user=leitung,
        mailbox=box,
        data=RuleData(
            name="eAU",
            is_active=True,
            dienstkennung="eAU",
            sender_address="",
            sender_domain="",
            telematik_id="",
            subject_words="",
            assign="",
            assign_user_id=None,
            assign_group_id=None,
            set_state="",
            queue_name="Aufnahme",
            stop_after_match=True,
        ),
    )
    edit_url = f"{portal_web.url}/postfach/{box.pk}/regeln/{rule.pk}/"
    first = browser_context.new_page()
    first.set_default_timeout(10_000)
    LoginPage(first, portal_web.url).open().login("leitung", "pw-secret-123")
    second = browser_context.new_page()
    second.set_default_timeout(10_000)
    for tab in (first, second):
        tab.goto(edit_url)
        expect(tab.get_by_role("heading", level=1)).to_have_text("Regel „eAU“ bearbeiten")

    # The first tab saves a new queue.
    first.get_by_label("In Ablage legen").fill("Arbeitsunfähigkeit")
    first.get_by_role("button", name="Speichern").click()
    expect(_flash(first)).to_have_text("Regel gespeichert.")

    # The second tab, loaded before that save, changes the name and the words: refused, nothing overwritten.
    second.get_by_label("Name der Regel").fill("eAU Kardiologie")
    second.get_by_label("Wörter im Betreff").fill("Krankmeldung")
    second.get_by_role("button", name="Speichern").click()
    refusal = second.locator(".routing-form .errorlist.nonfield")
    expect(refusal).to_contain_text("Die Regel wurde inzwischen an anderer Stelle geändert.")
    expect(refusal).to_contain_text("Ihre Eingaben stehen noch im Formular")
    expect(second.get_by_label("Name der Regel")).to_have_value("eAU Kardiologie")
    expect(second.get_by_label("Wörter im Betreff")).to_have_value("Krankmeldung")
    # What the tab showed, not the other tab's value: the user decides, the form does not mix the two.
    expect(second.get_by_label("In Ablage legen")).to_have_value("Aufnahme")
    assert _rule(rule.pk) == ("eAU", "", "Arbeitsunfähigkeit")
    assert_accessible(second, "the refused stale save")

    # Saving again is the deliberate overwrite the refusal offered.
    second.get_by_role("button", name="Speichern").click()
    expect(_flash(second)).to_have_text("Regel gespeichert.")
    assert _rule(rule.pk) == ("eAU Kardiologie", "Krankmeldung", "Aufnahme")

    # A new rule with a double click on "Speichern": one rule, shown saved.
    rules_url = f"{portal_web.url}/postfach/{box.pk}/regeln/"
    first.goto(rules_url)
    form = first.locator("form.routing-form")
    form.get_by_label("Name der Regel").fill("Laborbefunde")
    form.get_by_label("Wörter im Betreff").fill("Labor")
    form.get_by_label("In Ablage legen").fill("Labor")
    click_twice_while_the_first_is_answered(first, form.get_by_role("button", name="Speichern"), rules_url)
    expect(first).to_have_url(rules_url)
    expect(_flash(first)).to_have_text("Regel gespeichert.")
    expect(first.locator("#flash-alert")).to_be_empty()
    assert list(RoutingRule.objects.filter(mailbox=box).values_list("name", flat=True).order_by("position")) == [
        "eAU Kardiologie",
        "Laborbefunde",
    ]
