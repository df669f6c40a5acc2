"""Template tags that build HTML in Python: escaping and selection."""

from __future__ import annotations

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
