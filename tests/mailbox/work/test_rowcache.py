"""The row cache: a row is re-rendered whenever anything it shows changed, and only then."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import get_template
from django.utils import translation

from mailbox import rowcache, selectors
from mailbox.services.assignment import message_take
from mailbox.services.claims import message_claim
from mailbox.services.presence import presence_join
from mailbox.services.reading import message_open

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    rowcache.clear()
    yield
    rowcache.clear()


def _template_paths() -> set[str]:
    source = Path(settings.BASE_DIR, "templates", rowcache.ROW_TEMPLATE).read_text()
    # `m` is the message (`{% with m=message %}`); `p` a presence entry, part of `m.present`.
    return set(re.findall(r"(?<![\w.])m\.([A-Za-z_][\w.]*)", source))


def test_every_value_the_row_template_reads_is_part_of_the_key():
    paths = _template_paths()
    assert paths, "the template reads the message as `m`"
    # A value object in the key (badge: a frozen dataclass) covers its attributes.
    covered = set(rowcache.ROW_INPUTS)
    missing = {
        p for p in paths if not any(p == c or p.startswith(f"{c}.") for c in covered) and p != "get_state_display"
    }
    # get_state_display is a function of `state` (in the key) and the language (in the key).
    assert not missing, f"the row template reads {missing}: add them to ROW_INPUTS"


def _row(user, pk):
    return next(m for m in selectors.message_list_for_user(user).object_list if m.pk == pk)


def _fresh(message, oob=False) -> str:
    return get_template(rowcache.ROW_TEMPLATE).render({"message": message, "oob": oob})


def test_cached_row_equals_a_fresh_render_through_every_change(alice, bob, message):
    seen = set()

    def check(user):
        row = _row(user, message.pk)
        html = rowcache.message_row_html(row)
        assert html == _fresh(row)
        assert rowcache.message_rows_html([row]) == html
        # The key written out reads what the paths of ROW_INPUTS read, from a list row and a live row alike.
        assert rowcache.row_values(row) == rowcache.reference_key(row)
        full = selectors.message_row_for_user(user, message.pk)
        assert rowcache.row_values(full) == rowcache.reference_key(full)
        seen.add(str(html))

    check(alice)  # unread, nobody working
    message_open(user=alice, message=message)
    check(alice)  # read now
    check(bob)  # still unread for Bob
    message.refresh_from_db()
    message_take(user=alice, message=message, version=message.version)
    check(bob)
    message.refresh_from_db()
    message_claim(user=alice, message=message, page="p1")
    check(bob)
    presence_join(user=alice, message=message, channel_name="chan-1")
    check(bob)
    assert len(seen) == 5, "each change showed a different row (Alice's and Bob's unread rows were alike)"


def test_the_key_has_one_value_per_input(alice, message):
    assert len(rowcache.row_values(_row(alice, message.pk))) == len(rowcache.ROW_INPUTS)


def test_same_look_renders_once(alice, bob, message, monkeypatch):
    renders = []
    real = rowcache.get_template

    def counting(name):
        renders.append(name)
        return real(name)

    monkeypatch.setattr(rowcache, "get_template", counting)
    first = rowcache.message_row_html(_row(alice, message.pk))
    second = rowcache.message_row_html(_row(bob, message.pk))  # both unread, nothing else differs
    assert first == second
    assert len(renders) == 1
    rowcache.message_row_html(_row(bob, message.pk), oob=True)
    assert len(renders) == 2
    assert 'hx-swap-oob="true"' in rowcache.message_row_html(_row(bob, message.pk), oob=True)


def test_language_is_part_of_the_key(alice, message):
    row = _row(alice, message.pk)
    with translation.override("de"):
        german = rowcache.message_row_html(row)
    with translation.override("en"):
        english = rowcache.message_row_html(row)
    assert german != english
    with translation.override("en"):
        assert english == _fresh(row)


def test_the_cache_is_bounded(alice, message, monkeypatch):
    monkeypatch.setattr(rowcache, "MAX_ROWS", 3)
    row = _row(alice, message.pk)
    for i in range(10):
        row.subject = f"Betreff {i}"
        rowcache.message_row_html(row)
    assert len(rowcache._rows) == 3
