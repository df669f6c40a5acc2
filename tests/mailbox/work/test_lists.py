"""Lists: views, filters, sorting, search and the number of queries per page."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from mailbox import selectors
from mailbox.models import (
    Message,
    MessageRead,
    Presence,
)
from mailbox.selectors import MessageFilter, message_list_for_user
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.work.support import BERLIN, Role, ingest

pytestmark = pytest.mark.django_db


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


@pytest.fixture
def worked_box(box, alice, bob):
    """Five messages in different states; one in another mailbox of alice, one she cannot see."""
    m = {
        "new": ingest(box, subject="Aufnahme", sender="Zahnarzt Zander <zander@z.kim.telematik-test>"),
        "mine": ingest(box, subject="Befund", dienstkennung="eAU;Lieferung;V1.0", sender="Arzt Abel <a@a.de>"),
        "bob": ingest(box, subject="Ckontrolle", sender="Praxis Meier <m@m.de>"),
        "done_mine": ingest(box, subject="Dokument", sender="Berger <b@b.de>"),
        "done_free": ingest(box, subject="Entlassung", dienstkennung="KIM-Mail;Default;V1.0", sender="Kurz <k@k.de>"),
    }
    other = MailboxFactory(display_name="Neurologie")
    MembershipFactory(mailbox=other, user=alice, role=Role.READER)
    m["other_mine"] = ingest(other, subject="Fremdhaus", sender="Otto <o@o.de>")
    m["foreign"] = ingest(MailboxFactory(), subject="Geheim", sender="Geheim <g@g.de>")
    updates = {
        "new": {"received_at": at(1, 10)},
        # 00:30 in Berlin on March 3 is still March 2 in UTC: the day filter must use local dates.
        "mine": {"received_at": at(3, 0, 30), "assignee": alice, "state": Message.State.IN_PROGRESS},
        "bob": {"received_at": at(4, 9), "assignee": bob, "state": Message.State.WAITING, "due_at": at(9, 9)},
        "done_mine": {"received_at": at(5, 9), "assignee": alice, "state": Message.State.DONE},
        "done_free": {"received_at": at(6, 9), "state": Message.State.DONE},
        "other_mine": {"received_at": at(7, 9), "assignee": alice, "state": Message.State.IN_PROGRESS},
        "foreign": {"received_at": at(8, 9), "assignee": alice, "state": Message.State.IN_PROGRESS},
    }
    for key, fields in updates.items():
        Message.objects.filter(pk=m[key].pk).update(**fields)
    return m


def listed(user, *, mailbox=None, **filters) -> list[int]:
    page = message_list_for_user(user, mailbox=mailbox, filters=MessageFilter(**filters))
    return [m.pk for m in page.object_list]


def keys(worked, *names) -> set[int]:
    return {worked[n].pk for n in names}


def test_filter_views(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box)) == keys(w, "new", "mine", "bob", "done_mine", "done_free")
    assert set(listed(alice)) == keys(w, "new", "mine", "bob", "done_mine", "done_free", "other_mine")
    assert set(listed(alice, mailbox=box, view="unassigned")) == keys(w, "new")
    assert set(listed(alice, mailbox=box, view="open")) == keys(w, "new", "mine", "bob")
    mine = set(listed(alice, view="mine"))
    assert keys(w, "mine", "other_mine") <= mine
    assert not mine & keys(w, "new", "bob", "done_free", "foreign")
    assert set(listed(alice, view="mine", state=Message.State.IN_PROGRESS)) == keys(w, "mine", "other_mine")


def test_filter_by_state(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box, state="waiting")) == keys(w, "bob")
    assert set(listed(alice, mailbox=box, state="done")) == keys(w, "done_mine", "done_free")
    assert set(listed(alice, mailbox=box, state="new")) == keys(w, "new")


def test_filter_by_dienstkennung(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box, dienstkennung="eAU")) == keys(w, "mine")
    assert set(listed(alice, mailbox=box, dienstkennung="arztbrief")) == keys(w, "new", "bob", "done_mine")
    assert set(listed(alice, mailbox=box, dienstkennung="KIM-Mail;Default;V1.0")) == keys(w, "done_free")
    assert listed(alice, mailbox=box, dienstkennung="eAU;Lieferung;V9.9") == []


def test_filter_by_local_date(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box, date_from=date(2026, 3, 3), date_to=date(2026, 3, 3))) == keys(w, "mine")
    assert set(listed(alice, mailbox=box, date_to=date(2026, 3, 2))) == keys(w, "new")
    assert set(listed(alice, mailbox=box, date_from=date(2026, 3, 5))) == keys(w, "done_mine", "done_free")


def test_filter_by_queue_on_the_mailbox_page(client, alice, box, worked_box):
    # Routing rules file messages into a mailbox's queues (Ablagen): its page offers them as a filter.
    from mailbox.models import MailboxQueue, QueuedMessage

    aufnahme = MailboxQueue.objects.create(mailbox=box, name="Aufnahme")
    MailboxQueue.objects.create(mailbox=box, name="Labor")
    QueuedMessage.objects.create(message=worked_box["new"], queue=aufnahme)
    foreign = MailboxQueue.objects.create(mailbox=worked_box["foreign"].mailbox, name="Fremd")
    QueuedMessage.objects.create(message=worked_box["foreign"], queue=foreign)

    assert listed(alice, mailbox=box, queue=aufnahme.pk) == [worked_box["new"].pk]
    assert listed(alice, queue=foreign.pk) == []  # another house's queue shows nothing of it
    client.force_login(alice)
    url = reverse("mailbox:mailbox-messages", args=[box.pk])
    html = client.get(url).content.decode()
    assert '<select name="queue"' in html and ">Aufnahme</option>" in html and ">Labor</option>" in html
    filtered = client.get(url, {"queue": aufnahme.pk}).content.decode()
    assert filtered.count('class="msg-row') == 1 and f'id="msg-{worked_box["new"].pk}"' in filtered
    assert "data-live-mailboxes" not in filtered  # a filtered list is not fed new mail live
    other_page = client.get(reverse("mailbox:mailbox-messages", args=[worked_box["other_mine"].mailbox_id]))
    assert '<select name="queue"' not in other_page.content.decode()  # a mailbox without queues offers none


def test_sorting(alice, box, worked_box):
    w = worked_box
    newest_first = [w[k].pk for k in ("done_free", "done_mine", "bob", "mine", "new")]
    assert listed(alice, mailbox=box) == newest_first
    assert listed(alice, mailbox=box, sort="-received") == newest_first
    assert listed(alice, mailbox=box, sort="received") == newest_first[::-1]
    assert listed(alice, mailbox=box, sort="subject") == [
        w[k].pk for k in ("new", "mine", "bob", "done_mine", "done_free")
    ]
    # By sender name: Arzt Abel, Berger, Kurz, Praxis Meier, Zahnarzt Zander.
    assert listed(alice, mailbox=box, sort="from") == [
        w[k].pk for k in ("mine", "done_mine", "done_free", "bob", "new")
    ]


@pytest.fixture
def searchable(box):
    return {
        "befund": ingest(box, subject="Laborbericht", body="Anbei die Befunde vom Montag.", sender="Labor <l@l.de>"),
        "sender": ingest(
            box, subject="Rückfrage", body="Bitte melden.", sender="Praxis Dr. Sommer <sommer@praxis-sommer.de>"
        ),
        "subject": ingest(box, subject="Entlassbrief Müller", body="Siehe Anhang.", sender="Klinik <k@k.de>"),
        "foreign": ingest(MailboxFactory(), subject="Befunde", body="Befunde", sender="Sommer <s@s.de>"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Befund", {"befund"}),
        ("befunde", {"befund"}),
        ("Sommer", {"sender"}),
        ("sommer@praxis-sommer.de", {"sender"}),
        ("Entlassbrief", {"subject"}),
        ("müller", {"subject"}),
        ("Befund Montag", {"befund"}),
        ("Befund Sommer", set()),
        ("Röntgen", set()),
        ("Entlassbrief -Befund", {"subject"}),
        ("Befund -Montag", set()),
        # Only exclusions: nearly every message would match, found by reading them all (the form refuses it).
        ("-Montag", set()),
        ('-"Befunde vom"', set()),
        ("Entlassbrief or -Montag", set()),
    ],
)
def test_search_over_subject_sender_and_body(query, expected, alice, box, searchable):
    assert set(listed(alice, q=query)) == {searchable[k].pk for k in expected}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="German stemming needs PostgreSQL full text")
@pytest.mark.parametrize(
    ("query", "expected"), [("Befundes", "befund"), ("Laborberichte", "befund"), ("Entlassbriefe", "subject")]
)
def test_full_text_search_understands_german_inflection(query, expected, alice, box, searchable):
    # Substring search cannot find these: only the German stemmer maps them onto the stored words.
    assert listed(alice, q=query) == [searchable[expected].pk]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the two readings are PostgreSQL full text")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Befund or Rückfrage -Sommer", {"befund"}),
        ("Sommer -melden", set()),
        ('Sommer -"Bitte melden"', set()),
        ("Sommer -Montag", {"sender"}),
        ("Befund -Sommer or Sommer -Befunde", {"befund", "sender"}),
        # A stop word the German reading drops: the plain one still has it (the sender's words).
        ("Arztbrief -den", set()),
        ('Arztbrief -"unter den"', set()),
        ("Arztbrief -den or Linden", {"linden"}),
        ("Arztbrief -Montag", {"linden"}),
    ],
)
def test_an_exclusion_holds_in_both_readings(query, expected, alice, box, searchable):
    # A message matches in its German reading (stems: "sommer" -> "somm") or its plain one (the sender's words are
    # stored plain); an exclusion must hold in the reading that found it as well as in the other.
    searchable["linden"] = ingest(box, subject="Arztbrief", body="Anbei.", sender="Praxis Unter den Linden <p@p.de>")
    assert set(listed(alice, q=query)) == {searchable[k].pk for k in expected}


def test_a_search_that_only_excludes_is_refused_with_its_reason(client, alice, box, searchable):
    client.force_login(alice)
    html = client.get(reverse("mailbox:mailbox-messages", args=[box.pk]), {"q": "-Montag"}).content.decode()
    assert "Suche: Bitte mindestens ein Wort angeben, das vorkommen soll" in html
    assert 'value="-Montag"' in html


def _plan_nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plan is PostgreSQL's")
def test_a_search_that_only_excludes_reads_no_message_rows_on_a_big_table(alice, box, searchable):
    # 20,000 messages that all contain "Laborwert": "-Laborwert" matches none of them, and before, PostgreSQL read
    # every row to find that out (a sequential scan of the whole table); "die -Labor" too, as "die" is a stop word.
    from django.test.utils import CaptureQueriesContext

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mailbox_message (mailbox_id, uidl, raw_sha256, size, received_at, from_address, from_name,"
            ' subject, text_body, html_body, message_id, in_reply_to, "references", dienstkennung, "to", cc,'
            " decryption_results, integrity_results, kim_error_codes, is_malformed, parse_problems,"
            " attachment_count, state, version, claim_page, legal_hold, is_delivery_report)"
            " SELECT %s, 'big' || g, '', 1, now() - g * interval '1 minute', 'l@l.de', 'Labor', 'Wert ' || g,"
            " 'Laborwert', '', '', '', '', '', '[]', '[]', '[]', '[]', '[]', false, '[]', 0, 'new', 1, '', false,"
            " false FROM generate_series(1, 20000) g",
            [box.pk],
        )
        cursor.execute("ANALYZE mailbox_message")
    for query in ("-Laborwert", "die -Labor", "- Laborwert"):
        with CaptureQueriesContext(connection) as page:
            assert listed(alice, mailbox=box, q=query) == []
        with connection.cursor() as cursor:
            for captured in page.captured_queries:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + captured["sql"])
                nodes = _plan_nodes(cursor.fetchone()[0][0]["Plan"])
                scans = [n for n in nodes if n.get("Relation Name") == "mailbox_message"]
                assert scans == [], (query, [n["Node Type"] for n in scans])
    # A search with a word to find still finds, through the index, and excludes what it should.
    assert listed(alice, mailbox=box, q="Laborwert -Wert") == []
    assert listed(alice, mailbox=box, q="Montag -Laborwert") == [searchable["befund"].pk]
    # Exclusions widened to both readings leave the query a constant: the full-text index still finds the rows.
    with CaptureQueriesContext(connection) as page:
        assert listed(alice, mailbox=box, q="Montag -Labor or Sommer -Laborwert") == [searchable["sender"].pk]
    with connection.cursor() as cursor:
        message_scans = []
        for captured in page.captured_queries:
            cursor.execute("EXPLAIN (FORMAT JSON) " + captured["sql"])
            nodes = _plan_nodes(cursor.fetchone()[0][0]["Plan"])
            message_scans += [n for n in nodes if n.get("Relation Name") == "mailbox_message"]
            message_scans += [n for n in nodes if n.get("Index Name") == "message_search_tsv"]
    assert {(n["Node Type"], n.get("Index Name")) for n in message_scans} == {
        ("Bitmap Heap Scan", None),
        ("Bitmap Index Scan", "message_search_tsv"),
    }


def _busy_box(box, alice, bob, n: int) -> None:
    """n messages with everything a row shows: assignee, lock, presence, read state, attachments."""
    now = timezone.now()
    for i in range(n):
        m = message_ingest(mailbox=box, uidl=f"q{i}", raw=MAIL_WITH_PDF)
        fields = {"received_at": now - timedelta(minutes=i)}
        if i % 3 == 0:
            fields.update(assignee=bob, state=Message.State.IN_PROGRESS)
        if i % 4 == 0:
            fields.update(claimed_by=bob, claimed_at=now, claim_expires_at=now + timedelta(minutes=5))
        Message.objects.filter(pk=m.pk).update(**fields)
        if i % 2 == 0:
            MessageRead.objects.create(message=m, user=alice)
        if i % 5 == 0:
            Presence.objects.create(message=m, user=bob, channel_name=f"chan-{i}")


@pytest.mark.parametrize("n", [5, 60])
@pytest.mark.parametrize("page", ["inbox", "mine", "mailbox-messages", "mailbox-messages-htmx", "page-2", "older"])
def test_list_views_need_a_fixed_number_of_queries(n, page, client, alice, bob, box, django_assert_max_num_queries):
    _busy_box(box, alice, bob, n)
    client.force_login(alice)
    box_url = reverse("mailbox:mailbox-messages", args=[box.pk])
    first_page = selectors.message_list_for_user(alice, mailbox=box)
    url, headers = {
        "inbox": (reverse("mailbox:inbox"), {}),
        "mine": (reverse("mailbox:mine"), {}),
        "mailbox-messages": (box_url, {}),
        "mailbox-messages-htmx": (box_url + "?view=open", {"HX-Request": "true", "HX-Target": "message-list"}),
        "page-2": (box_url + "?page=2", {}),
        "older": (box_url + "?" + (first_page.next_query or "page=2"), {}),
    }[page]
    cache.clear()  # the worst case: the Dienstkennung labels are read too
    # Session, user (with whether to show the managers' link), the user's roles, the mailbox, the page (a first
    # page with the rows' read state, a later one then its reads), labels, presence, the navigation (with the
    # header's counters): nine at most, however many messages.
    with django_assert_max_num_queries(9 if page in ("page-2", "older") else 8):
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    rows = html.count('class="msg-row')
    expected = {
        "inbox": min(n, selectors.PAGE_SIZE),
        "mailbox-messages": min(n, selectors.PAGE_SIZE),
        "mailbox-messages-htmx": min(n, selectors.PAGE_SIZE),
        "page-2": max(0, n - selectors.PAGE_SIZE),
        "older": max(0, n - selectors.PAGE_SIZE),
        "mine": 0,  # the busy box assigns to bob, not to alice
    }[page]
    assert rows == expected, (page, n, rows)
    if page == "mailbox-messages-htmx":
        assert 'id="message-list"' in html and "<html" not in html


@pytest.mark.parametrize("view", ["all", "open", "unassigned", "mine"])
@pytest.mark.parametrize("sort", ["-received", "received", "from", "subject", "unknown"])
@pytest.mark.parametrize("size", [2, 50])
def test_a_first_page_read_by_the_compiled_query_is_the_page_the_orm_reads(
    alice, box, worked_box, monkeypatch, view, sort, size
):
    from mailbox.selectors import messages

    def page(mailbox):
        found = message_list_for_user(alice, mailbox=mailbox, size=size, filters=MessageFilter(view=view, sort=sort))
        rows = [(m.pk, m.mailbox.display_name, m.assignee_id, m.state, m.is_read) for m in found.object_list]
        return rows, found.has_next, found.has_previous, found.number, found.next_query

    compiled = [page(None), page(box)]
    monkeypatch.setattr(messages, "_is_plain_first_page", lambda *args: False)
    assert compiled == [page(None), page(box)]


def test_list_rows_are_the_instances_from_db_makes(alice, bob, box, worked_box, monkeypatch):
    from django.db.models.signals import post_init

    from mailbox.selectors import messages

    def described(found):
        out = []
        for m in found.object_list:
            related = [m.mailbox, m.assignee]
            out.append(
                [
                    (type(o), {k: v for k, v in vars(o).items() if k != "_state"}, o._state.adding, o._state.db)
                    for o in (m, *[r for r in related if r is not None])
                ]
                + [sorted(m.get_deferred_fields()), m.subject, m.text_body]  # a deferred field still loads
            )
        return out

    direct = described(message_list_for_user(alice))
    assert messages._MESSAGES.plain

    def receiver(**kwargs):
        pass

    # A post_init receiver makes the loader go through from_db (and Model.__init__), as Django would.
    post_init.connect(receiver, sender=Message)
    try:
        assert described(message_list_for_user(alice)) == direct
    finally:
        post_init.disconnect(receiver, sender=Message)


@pytest.mark.parametrize(
    "filters",
    [MessageFilter(), MessageFilter(dienstkennung="Arztbrief")],
    ids=["compiled-first-page", "filtered"],
)
def test_a_page_shows_this_users_reads_and_who_has_a_row_open(alice, bob, box, filters):
    read_by_alice, read_by_bob, open_by_bob, left_by_bob, untouched = (ingest(box) for _ in range(5))
    MessageRead.objects.create(message=read_by_alice, user=alice)
    MessageRead.objects.create(message=read_by_bob, user=bob)
    Presence.objects.create(message=open_by_bob, user=bob, channel_name="open", writing=True)
    # A crashed server's socket: past the presence TTL, not shown.
    Presence.objects.create(message=left_by_bob, user=bob, channel_name="gone")
    Presence.objects.filter(channel_name="gone").update(last_seen=timezone.now() - timedelta(hours=1))

    page = message_list_for_user(alice, mailbox=box, filters=filters)

    rows = {m.pk: m for m in page.object_list}
    assert {pk for pk, m in rows.items() if m.is_read} == {read_by_alice.pk}
    assert [(p.user_id, p.name, p.writing) for p in rows[open_by_bob.pk].present] == [(bob.pk, "Bernd Bauer", True)]
    assert rows[left_by_bob.pk].present == [] and rows[untouched.pk].present == []
    assert rows[read_by_bob.pk].present == [] and rows[read_by_alice.pk].present == []


def test_a_page_nobody_has_open_asks_no_presence_query(alice, bob, box, django_assert_num_queries):
    for _ in range(3):
        MessageRead.objects.create(message=ingest(box), user=alice)
    # The user's mailboxes and the page, its read state and presence flags folded in: no reads or presence query.
    with django_assert_num_queries(2) as captured:
        page = message_list_for_user(alice, mailbox=box)
    assert [(m.is_read, m.present) for m in page.object_list] == [(True, [])] * 3
    assert not any(q["sql"].startswith('SELECT "mailbox_presence"') for q in captured.captured_queries)


def test_a_pages_result_codes_are_the_fields_values_and_each_rows_own(alice, box):
    from mailbox.models.kimresults import LARGE_MESSAGE_REFUSED

    plain, refused, twin = ingest(box), ingest(box), ingest(box)
    Message.objects.filter(pk=refused.pk).update(kim_error_codes=[LARGE_MESSAGE_REFUSED], decryption_results=["02"])
    Message.objects.filter(pk=twin.pk).update(kim_error_codes=[LARGE_MESSAGE_REFUSED], decryption_results=["02"])
    fields = ("decryption_results", "integrity_results", "kim_error_codes")
    for filters in (MessageFilter(), MessageFilter(dienstkennung="Arztbrief")):  # compiled and ORM pages
        rows = {m.pk: m for m in message_list_for_user(alice, mailbox=box, filters=filters).object_list}
        for message in (plain, refused, twin):
            stored = Message.objects.get(pk=message.pk)
            assert [getattr(rows[message.pk], f) for f in fields] == [getattr(stored, f) for f in fields]
            assert rows[message.pk].security.state == stored.security.state
        assert rows[refused.pk].is_large_message_refused and not rows[plain.pk].is_error_mail
        # Assessed once per distinct combination on a page: each row still gets its own combination's.
        assert rows[refused.pk].security.state == "failed" and rows[plain.pk].security.state == "none"
        # Equal texts decode to equal lists, not to one list shared by two rows.
        assert rows[refused.pk].kim_error_codes is not rows[twin.pk].kim_error_codes


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "Befund " * 40}, "Suche"),  # a pasted paragraph, longer than the 200 characters a search takes
        ({"q": "Bef\x00und"}, "Suche"),
        ({"q": "-Befund"}, "Suche"),  # only excludes: almost every message, and no index finds them
        ({"q": "-Befund -Montag"}, "Suche"),
        ({"date_from": "2026-02-31"}, "von"),
        ({"state": "verloren", "q": "Befund"}, "Status"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_a_refused_filter_is_reported_and_lists_nothing(client, alice, box, searchable, params, field, htmx):
    # Dropping the refused filter silently listed every message, as if each matched it.
    client.force_login(alice)
    headers = {"HX-Request": "true", "HX-Target": "message-list"} if htmx else {}
    html = client.get(reverse("mailbox:mailbox-messages", args=[box.pk]), params, headers=headers).content.decode()
    alert = html.split("data-filter-errors>", 1)[1].split("</div>", 1)[0]
    assert f"{field}: " in alert
    assert 'class="msg-row' not in html and "Keine Nachrichten." not in html
    assert "data-live-mailboxes" not in html
    if not htmx and "\x00" not in params.get("q", "\x00"):
        assert f'value="{params["q"]}"' in html  # the search box keeps what was typed


def test_the_mine_page_ignores_the_view_parameter(client, alice, box, worked_box):
    client.force_login(alice)
    html = client.get(reverse("mailbox:mine"), {"view": "verloren"}).content.decode()
    assert "data-filter-errors" not in html
    assert f'id="msg-{worked_box["mine"].pk}"' in html
