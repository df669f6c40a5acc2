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
