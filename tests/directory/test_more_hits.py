"""More hits ("Weitere Treffer anzeigen"): the hits after the first page, up to the 100 the directory returns — as
a plain link (the whole page, scrolled to the first new hit) and with htmx (only the new hits, added to the list)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from directory.entries import DirectoryEntry, rank
from tisim.vzd.slapd import free_port

from .conftest import PAGED_PLACE

pytestmark = [pytest.mark.django_db, pytest.mark.slapd]

HTMX_MORE = {"HX-Request": "true", "HX-Target": "vzd-more"}


def _names(content: str) -> list[str]:
    return re.findall(r'<strong class="vzd-name">([^<]+)</strong>', content)


def _ids(content: str) -> list[str]:
    return re.findall(r'<li class="vzd-hit" id="(treffer-\d+)"', content)


def _more_href(content: str) -> str:
    match = re.search(
        r'<div id="vzd-more" class="vzd-more">(?:(?!</div>).)*?<a class="button" href="([^"]+)"', content, re.S
    )
    return match.group(1).replace("&amp;", "&") if match else ""


def _seitenweise(numbers: range) -> list[str]:
    return [f"Praxis Seitenweise {n:02d}" for n in numbers]


def test_first_page_offers_the_next_hits_as_a_plain_link(logged_in, vzd, paged_entries):
    content = logged_in.get(reverse("directory:search"), {"q": PAGED_PLACE}).content.decode()
    assert _names(content) == _seitenweise(range(1, 21))
    assert "20 Treffer angezeigt (von 45)" in content
    assert re.search(r'<p id="vzd-count" class="vzd-count vzd-muted" role="status">', content)
    href = _more_href(content)
    assert href.startswith("/directory/?") and href.endswith("&anzahl=40#treffer-21")
    assert f'hx-get="{href.split("#")[0].replace("&", "&amp;")}"' in content
    assert "Weitere Treffer anzeigen" in content


def test_the_link_without_javascript_shows_the_whole_page_one_page_longer(logged_in, vzd, paged_entries):
    first = logged_in.get(reverse("directory:search"), {"q": PAGED_PLACE}).content.decode()
    second = logged_in.get(_more_href(first)).content.decode()
    assert "<html" in second
    assert _names(second) == _seitenweise(range(1, 41))
    assert _ids(second) == [f"treffer-{n}" for n in range(1, 41)]  # the link's fragment names hit 21
    assert "40 Treffer angezeigt (von 45)" in second
    assert _more_href(second).endswith("&anzahl=60#treffer-41")

    last = logged_in.get(_more_href(second)).content.decode()
    assert _names(last) == _seitenweise(range(1, 46))
    assert "45 Treffer angezeigt" in last and "(von 45)" not in last
    assert _more_href(last) == "" and "Weitere Treffer anzeigen" not in last


def test_htmx_fetches_only_the_new_hits_and_adds_them_to_the_list(logged_in, vzd, paged_entries):
    url = reverse("directory:search")
    response = logged_in.get(url, {"q": PAGED_PLACE, "anzahl": "40"}, headers=HTMX_MORE)
    content = response.content.decode()
    assert "HX-Replace-Url" not in response.headers  # the address follows the longer list
    assert "<html" not in content and 'id="results"' not in content
    assert content.lstrip().startswith('<ol hx-swap-oob="beforeend:#vzd-list">')
    assert _names(content) == _seitenweise(range(21, 41))
    assert _ids(content) == [f"treffer-{n}" for n in range(21, 41)]
    assert content.count("data-first-new") == 1
    assert re.search(r'id="treffer-21"[^>]*data-first-new', content)
    assert '<p id="vzd-count" hx-swap-oob="innerHTML">40 Treffer angezeigt (von 45)</p>' in content
    assert _more_href(content).endswith("&anzahl=60#treffer-41")

    content = logged_in.get(url, {"q": PAGED_PLACE, "anzahl": "60"}, headers=HTMX_MORE).content.decode()
    assert _names(content) == _seitenweise(range(41, 46))
    assert ">45 Treffer angezeigt</p>" in content
    assert '<div id="vzd-more" class="vzd-more"></div>' in content

    # A new search (htmx aimed at #results) starts at the first page again.
    content = logged_in.get(url, {"q": PAGED_PLACE}, headers={"HX-Request": "true"}).content.decode()
    assert content.lstrip().startswith('<section id="results"') and len(_names(content)) == 20


def test_more_hits_end_at_the_hundred_the_directory_returns(logged_in, vzd):
    url = reverse("directory:search")
    content = logged_in.get(url, {"q": "müller", "anzahl": "80"}).content.decode()
    assert len(_names(content)) == 80 and _more_href(content).endswith("&anzahl=100#treffer-81")
    for anzahl in ("100", "500"):
        content = logged_in.get(url, {"q": "müller", "anzahl": anzahl}).content.decode()
        assert len(_names(content)) == 100 and len(set(_ids(content))) == 100
        assert "100 Treffer angezeigt" in content and _more_href(content) == ""
        assert "mehr als 100 Treffer – bitte Suche eingrenzen" in content
    added = logged_in.get(url, {"q": "müller", "anzahl": "100"}, headers=HTMX_MORE).content.decode()
    assert _ids(added) == [f"treffer-{n}" for n in range(81, 101)]
    # The pages continue one another: together they are the one list of 100, none twice, none left out.
    pages = [
        _names(logged_in.get(url, {"q": "müller", "anzahl": str(n)}, headers=HTMX_MORE).content.decode())
        for n in (40, 60, 80, 100)
    ]
    first = _names(logged_in.get(url, {"q": "müller"}).content.decode())
    assert first + [name for page in pages for name in page] == _names(content)


@pytest.mark.parametrize("anzahl", ["abc", "0", "-5", "1e9"])
def test_unusable_anzahl_shows_the_first_page(logged_in, vzd, paged_entries, anzahl):
    response = logged_in.get(reverse("directory:search"), {"q": PAGED_PLACE, "anzahl": anzahl})
    assert response.status_code == 200
    assert len(_names(response.content.decode())) == 20


def test_more_hits_are_not_audited_as_searches_are_not(logged_in, vzd, paged_entries):
    """Directory searches leave no audit event (they read public directory data); the next page neither."""
    before = AuditEvent.objects.count()  # signing in is audited
    logged_in.get(reverse("directory:search"), {"q": PAGED_PLACE})
    logged_in.get(reverse("directory:search"), {"q": PAGED_PLACE, "anzahl": "40"}, headers=HTMX_MORE)
    assert AuditEvent.objects.count() == before


def test_picker_offers_and_adds_the_next_hits(logged_in, vzd, paged_entries):
    url = reverse("directory:picker")
    content = logged_in.get(url, {"picker_q": PAGED_PLACE, "field": "to"}, headers={"HX-Request": "true"}).content
    content = content.decode()
    assert content.count("Auswählen") == 20
    assert '<p id="to-picker-count" class="vzd-muted" role="status">20 Treffer angezeigt (von 45)</p>' in content
    button = r'<button type="button" id="to-picker-more-button" hx-get="([^"]+)"'
    match = re.search(r'<div id="to-picker-more" class="vzd-more">\s*' + button, content)
    assert match, content
    more = match.group(1).replace("&amp;", "&")
    assert "picker_q=" in more and "field=to" in more and more.endswith("anzahl=40")

    added = logged_in.get(more, headers={"HX-Request": "true", "HX-Target": "to-picker-more"}).content.decode()
    assert added.lstrip().startswith('<ul hx-swap-oob="beforeend:#to-picker-list">')
    assert re.findall(r"<strong>(Praxis Seitenweise \d+)</strong>", added) == _seitenweise(range(21, 41))
    assert added.count("data-first-new") == 1 and added.count("Auswählen") == 20
    assert '<p id="to-picker-count" hx-swap-oob="innerHTML">40 Treffer angezeigt (von 45)</p>' in added
    assert 'hx-target="#to-picker-more"' in added and "anzahl=60" in added


def test_rank_is_a_total_order():
    """Equal score, name and length: the uid decides, whatever order the directory answered in, so that a second
    search for the next page continues exactly where the first ended."""
    a = DirectoryEntry(uid="a", telematik_id="1-1", display_name="Praxis Gleich")
    b = DirectoryEntry(uid="b", telematik_id="1-1", display_name="Praxis Gleich")
    assert [e.uid for e in rank([b, a], ["praxis"])] == ["a", "b"]
    assert [e.uid for e in rank([a, b], ["praxis"])] == ["a", "b"]


def test_directory_gone_when_adding_hits_says_so_and_offers_the_same_again(logged_in, vzd, paged_entries, settings):
    settings.KIMPORTAL_VZD_URL = f"ldap://127.0.0.1:{free_port()}"
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 2.0
    query = {"q": PAGED_PLACE, "anzahl": "40"}
    response = logged_in.get(reverse("directory:search"), query, headers=HTMX_MORE)
    content = response.content.decode()
    assert "hx-swap-oob" not in content  # neither the list nor the count is touched
    assert response.headers["HX-Replace-Url"] == "false"  # the address keeps saying 20, as the list shows
    assert 'id="vzd-more-link"' in content and 'aria-describedby="vzd-more-error"' in content
    assert 'role="alert" data-vzd-error>Das Verzeichnis (VZD) ist nicht erreichbar' in content
    assert _more_href(content).endswith("&anzahl=40#treffer-21")

    query = {"picker_q": PAGED_PLACE, "field": "to", "anzahl": "40"}
    headers = {"HX-Request": "true", "HX-Target": "to-picker-more"}
    content = logged_in.get(reverse("directory:picker"), query, headers=headers).content.decode()
    assert "hx-swap-oob" not in content and "Das Verzeichnis (VZD) ist nicht erreichbar" in content
    assert content.lstrip().startswith('<div id="to-picker-more"') and "anzahl=40" in content
