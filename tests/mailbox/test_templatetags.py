"""Template tags that build HTML in Python: escaping and selection."""

from __future__ import annotations

import pytest
from django.template import Context, Template


def test_choice_options_escape_and_select():
    html = Template("{% load choices %}{% choice_options choices selected %}").render(
        Context({"choices": [(1, "Anna Alt"), (2, '<script>alert("x")</script>'), (3, "Bernd & Co")], "selected": 2})
    )
    assert html == (
        '<option value="1">Anna Alt</option>'
        '<option value="2" selected>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</option>'
        '<option value="3">Bernd &amp; Co</option>'
    )


def test_choice_options_without_selection():
    html = Template("{% load choices %}{% choice_options choices None %}").render(Context({"choices": [(7, "X")]}))
    assert html == '<option value="7">X</option>'


def test_choice_options_kept_lists_select_each_time_anew():
    template = Template("{% load choices %}{% choice_options choices selected %}")
    choices = [(1, "Anna"), (2, "Bernd"), (3, "Carla")]
    first = template.render(Context({"choices": list(choices), "selected": 3}))
    again = template.render(Context({"choices": list(choices), "selected": 1}))
    none = template.render(Context({"choices": list(choices), "selected": None}))
    anna, bernd, carla = '<option value="1">Anna</option>', '<option value="2">Bernd</option>', '<option value="3"'
    assert first == f"{anna}{bernd}{carla} selected>Carla</option>"
    assert again == f'<option value="1" selected>Anna</option>{bernd}{carla}>Carla</option>'
    assert " selected" not in none
    # A selection equal to a value of another type is still a match ("==", as before the options were kept).
    assert '<option value="1" selected>' in template.render(Context({"choices": choices, "selected": True}))
    assert " selected" not in template.render(Context({"choices": choices, "selected": "1"}))


def test_choice_options_of_unhashable_choices():
    html = Template("{% load choices %}{% choice_options choices 2 %}").render(
        Context({"choices": [[1, "Anna"], [2, "<b>"]]})
    )
    assert html == '<option value="1">Anna</option><option value="2" selected>&lt;b&gt;</option>'


def test_samefor_renders_once_per_values_and_language_and_escapes():
    from django.template import TemplateSyntaxError
    from django.utils import translation
    from django.utils.functional import SimpleLazyObject

    from mailbox.templatetags import fragments

    fragments.clear()
    source = Template(
        "{% load i18n fragments %}{% samefor 't-name' flag %}{{ count }} {{ text }} {% translate 'Abmelden' %}"
        "{% endsamefor %}"
    )

    def render(**context):
        return source.render(Context(context))

    with translation.override("de"):
        first = render(flag=True, count=1, text="<b>")
        assert first == "1 &lt;b&gt; Abmelden"
        # The same values: the first rendering again, whatever else the context holds.
        assert render(flag=True, count=2, text="x") == first
        # Another value of a named variable, or a lazy one (unwrapped): rendered anew.
        assert render(flag=False, count=3, text="y") == "3 y Abmelden"
        assert render(flag=SimpleLazyObject(lambda: True), count=4, text="z") == first
    with translation.override("en"):
        assert render(flag=True, count=5, text="z") == "5 z Log out"
    fragments.clear()
    with pytest.raises(TemplateSyntaxError):  # a child template would see its parent's block
        Template("{% load fragments %}{% samefor 'b' %}{% block x %}{% endblock %}{% endsamefor %}")


def test_the_navigation_shows_each_mailbox_s_current_counts_and_status():
    # The links are kept (mailbox.templatetags.fragments); the counts, which change all day, are not.
    from types import SimpleNamespace

    from django.template.loader import render_to_string
    from django.utils import translation

    from mailbox.templatetags import fragments

    fragments.clear()

    def nav(unread, open_count, status="ok"):
        account = SimpleNamespace(status=status, get_status_display=lambda: f"Status {status}")
        box = SimpleNamespace(
            pk=7, display_name="Station <3>", unread_count=unread, open_count=open_count, account=account
        )
        return render_to_string("mailbox/partials/_nav.html", {"mailboxes": [box], "counters": {"mine": 0}})

    with translation.override("de"):
        first = nav(2, 5)
        assert 'id="nav-mailbox-7"' in first and "Station &lt;3&gt;" in first
        assert '<span class="count" title="ungelesen">2</span>' in first
        assert '<span class="count count-open" title="offen">5</span>' in first
        again = nav(0, 6, status="error")
        assert 'title="ungelesen"' not in again
        assert '<span class="count count-open" title="offen">6</span>' in again
        assert '<span class="status-dot status-bad" title="Status error">!</span>' in again
        assert nav(2, 5) == first


def test_samefor_holes_are_rendered_every_time_and_the_rest_is_kept():
    from django.template import TemplateSyntaxError

    from mailbox.templatetags import fragments

    fragments.clear()
    source = Template(
        "{% load fragments %}{% samefor 't-holes' flag %}<p>{{ text }}|{% varies %}{{ token }}{% endvaries %}|"
        "{% if flag %}{% varies %}<b>{{ name }}</b>{% endvaries %}{% endif %}"
        "{% samefor 't-inner' %}[{% varies %}{{ token }}{% endvaries %}]{% endsamefor %}</p>{% endsamefor %}"
    )

    def render(**context):
        return source.render(Context(context))

    assert render(flag=True, text="a", token="T1", name="<x>") == "<p>a|T1|<b>&lt;x&gt;</b>[T1]</p>"
    # Kept: the text outside the holes; anew: the holes, also those of a fragment within the fragment.
    assert render(flag=True, text="b", token="T2", name="Y") == "<p>a|T2|<b>Y</b>[T2]</p>"
    assert render(flag=False, text="c", token="T3", name="Z") == "<p>c|T3|[T3]</p>"
    fragments.clear()
    # A fragment used first within another that is rendered the first time: its hole stays a hole of the outer one.
    assert render(flag=False, text="d", token="T4") == "<p>d|T4|[T4]</p>"
    assert render(flag=False, text="e", token="T5") == "<p>d|T5|[T5]</p>"
    fragments.clear()
    with pytest.raises(TemplateSyntaxError):
        Template(
            "{% load fragments %}{% samefor 'b' %}{% if x %}{% block x %}{% endblock %}{% endif %}{% endsamefor %}"
        )
    with pytest.raises(TemplateSyntaxError):
        Template("{% load fragments %}{% samefor 'b' %}{% varies x %}{% endvaries %}{% endsamefor %}")


def test_samefor_holes_hold_blocks_a_child_template_fills():
    from django.template import engines

    from mailbox.templatetags import fragments

    fragments.clear()
    engine = engines["django"].engine
    parent = engine.from_string(
        "{% load fragments %}{% samefor 't-frame' %}<h1>{% varies %}{% block title %}Titel{% endblock %}"
        "{% endvaries %}</h1>{% endsamefor %}"
    )
    first = engine.from_string("{% extends parent %}{% block title %}{{ a }}{% endblock %}")
    second = engine.from_string("{% extends parent %}")
    assert first.render(Context({"parent": parent, "a": "<eins>"})) == "<h1>&lt;eins&gt;</h1>"
    assert first.render(Context({"parent": parent, "a": "zwei"})) == "<h1>zwei</h1>"
    assert second.render(Context({"parent": parent})) == "<h1>Titel</h1>"
    fragments.clear()


@pytest.mark.django_db
def test_the_kept_page_frame_shows_each_request_its_own_token_nonce_and_user(client):
    # base.html is one kept fragment: the CSRF token, the scripts' nonce and the user's name are its holes.
    import re

    from django.urls import reverse

    from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

    anna = UserFactory(username="anna", first_name="Anna", last_name="Alt")
    bernd = UserFactory(username="bernd", first_name="Bernd", last_name="<Berg>")
    box = MailboxFactory(display_name="Station")
    for user in (anna, bernd):
        MembershipFactory(mailbox=box, user=user)
    pages = []
    for user in (anna, bernd, anna):
        client.force_login(user)
        response = client.get(reverse("mailbox:inbox"))
        pages.append((response, response.content.decode()))
    nonces, tokens = [], []
    for response, html in pages:
        nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
        assert html.count(f'nonce="{nonce}"') == 3
        nonces.append(nonce)
        header_token = re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)
        form_tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert len(form_tokens) == 2 and set(form_tokens) == {header_token}
        tokens.append(header_token)
    assert len(set(nonces)) == 3 and len(set(tokens)) == 3
    anna_name = '<span class="whoami">Anna Alt</span>'
    assert anna_name in pages[0][1] and anna_name in pages[2][1]
    assert '<span class="whoami">Bernd &lt;Berg&gt;</span>' in pages[1][1]
    assert pages[0][1].count('id="site-menu"') == 1 and '<main id="main" tabindex="-1">' in pages[1][1]


@pytest.mark.parametrize("fmt", ["d.m.Y H:i", "d.m.Y H:i:s", "d.m.Y", "H:i", "d.m. H:i:s", "c", "j. F Y", ""])
def test_numdate_and_numtime_give_what_date_and_time_give(fmt):
    from datetime import UTC, date, datetime, timedelta
    from datetime import timezone as tz

    from django.utils import timezone, translation

    values = [
        datetime(2026, 3, 29, 0, 59, 5, tzinfo=UTC),  # the night the clocks go forward in Berlin
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5),  # naive
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 7, 1, 12, tzinfo=tz(timedelta(hours=-5))),
        None,
        "",
        "kein Datum",
    ]
    if fmt and set(fmt) <= set("dmY. "):  # a date with a time format is an error in either
        values.append(date(2026, 1, 2))
    pairs = Template(
        "{% load dates %}{% for v in values %}{{ v|date:fmt }}={{ v|numdate:fmt }};"
        "{{ v|time:fmt }}={{ v|numtime:fmt }}|{% endfor %}"
    )
    for zone in ("Europe/Berlin", "UTC"):
        with timezone.override(zone), translation.override("de"):
            html = pairs.render(Context({"values": values, "fmt": fmt}))
        for item in html.split("|")[:-1]:
            for pair in item.split(";"):
                django_text, ours = pair.split("=")
                assert ours == django_text, (zone, fmt, item)


@pytest.mark.django_db
def test_the_kept_work_section_shows_each_message_and_user_their_own(client):
    # The message page's work section is a kept fragment for role and state: versions, URLs, notes, the
    # assignee and the per-user forms are holes, so one message's page never shows another's.
    import re

    from django.urls import reverse

    from mailbox.services.assignment import message_assign
    from mailbox.services.ingest import message_ingest
    from mailbox.services.notes import note_add
    from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
    from tests.mailbox.mails import MAIL_WITH_PDF

    anna, bernd = UserFactory(username="anna"), UserFactory(username="bernd", first_name="Bernd", last_name="Berg")
    box = MailboxFactory(display_name="Station")
    for user in (anna, bernd):
        MembershipFactory(mailbox=box, user=user)
    first = message_ingest(mailbox=box, uidl="w1", raw=MAIL_WITH_PDF)
    second = message_ingest(mailbox=box, uidl="w2", raw=MAIL_WITH_PDF.replace(b"Entlassbrief", b"Zweiter Brief"))
    note_add(user=anna, message=second, body="Nur <am> zweiten")
    second.refresh_from_db()
    message_assign(user=anna, message=second, version=second.version, assignee_id=bernd.pk)
    second.refresh_from_db()

    def work(user, message):
        client.force_login(user)
        html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
        return html[html.index('<section id="work"') :]

    one, two, two_for_bernd = work(anna, first), work(anna, second), work(bernd, second)
    assert f'data-loaded-version="{first.version}"' in one and f'data-loaded-version="{second.version}"' in two
    assert f"/{first.pk}/" in one and f"/{first.pk}/" not in two and f"/{second.pk}/" in two
    assert "Noch keine Notizen." in one and "Nur &lt;am&gt; zweiten" in two and "Noch keine Notizen." not in two
    assert '<dd id="work-assignee">niemand</dd>' in one and '<dd id="work-assignee">Bernd Berg</dd>' in two
    assert "Zuständigkeit entfernen" not in one and "Zuständigkeit entfernen" in two
    # Take is offered to whoever is not the assignee: anna on both, bernd not on his own.
    assert "Übernehmen" in one and "Übernehmen" in two and "Übernehmen" not in two_for_bernd
    # anna opened the message first and holds its lock: bernd's forms are disabled, hers are not.
    assert re.search(r'id="work-actions"[^>]* disabled', two_for_bernd)
    assert not re.search(r'id="work-actions"[^>]* disabled', two)


def test_the_kept_lock_panel_shows_each_user_the_face_of_the_lock():
    # One fragment per face ("free", "mine", "other"), read once per rendering: the holder's name, the times,
    # the version and the presence are holes.
    from datetime import timedelta
    from types import SimpleNamespace

    from django.template.loader import render_to_string
    from django.utils import timezone, translation

    from mailbox.templatetags import fragments

    fragments.clear()
    now = timezone.now()

    def panel(holder, user_pk, version, expires=timedelta(minutes=5)):
        message = SimpleNamespace(
            pk=4, version=version, role="processor", claimed_by_id=holder, claim_expires_at=now + expires,
            claimed_at=now, claimed_by=SimpleNamespace(get_full_name=lambda: f"Person {holder}", username="p"),
            present=[],
        )  # fmt: skip
        message.claim_active = lambda: bool(message.claimed_by_id and message.claim_expires_at > timezone.now())
        user = SimpleNamespace(pk=user_pk)
        return render_to_string("mailbox/partials/_lock_panel.html", {"message": message, "user": user})

    with translation.override("de"):
        mine, other = panel(7, 7, 1), panel(8, 7, 2)
        free, expired = panel(None, 7, 3), panel(7, 7, 4, expires=-timedelta(seconds=1))
    assert 'class="lock-panel lock-mine"' in mine and "Sie bearbeiten diese Nachricht." in mine
    assert 'class="lock-panel lock-other"' in other and "In Bearbeitung durch Person 8" in other
    assert 'data-locked-by-other="1"' in other and 'data-locked-by-other="0"' in mine
    assert 'class="lock-panel lock-free"' in free and 'class="lock-panel lock-free"' in expired
    assert 'data-version="2"' in other and 'data-version="4"' in expired
    fragments.clear()


def test_samefor_keeps_at_most_its_bound_and_lets_the_oldest_go_first(monkeypatch):
    from mailbox.templatetags import fragments

    fragments.clear()
    monkeypatch.setattr(fragments, "MAX_FRAGMENTS", 3)
    source = Template("{% load fragments %}{% samefor 't-bound' n %}{{ n }}{{ extra }}{% endsamefor %}")
    for n in range(4):
        assert source.render(Context({"n": n, "extra": "a"})) == f"{n}a"
    assert len(fragments._fragments) == 3
    # The newest are still kept (their first rendering comes back); the oldest is rendered anew.
    assert source.render(Context({"n": 3, "extra": "b"})) == "3a"
    assert source.render(Context({"n": 0, "extra": "b"})) == "0b"
    fragments.clear()
