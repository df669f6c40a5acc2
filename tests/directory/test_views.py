from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from django.utils.html import escape

from directory.models import Contact
from directory.services import contact_favorite_add

pytestmark = [pytest.mark.django_db, pytest.mark.slapd]
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("directory:search", "get"),
        ("directory:picker", "get"),
        ("directory:contacts", "get"),
        ("directory:favorite-toggle", "post"),
    ],
)
def test_login_required(client, name, method):
    url = reverse(name)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_search_page_without_query(logged_in):
    response = logged_in.get(reverse("directory:search"))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'hx-trigger="input changed delay:250ms, search"' in content
    assert "directory.js" in content and "directory.css" in content
    assert "data-hit" not in content and "vzd-message" not in content


def test_search_page_full_and_fragment(logged_in, vzd):
    response = logged_in.get(reverse("directory:search"), {"q": "müller"})
    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" in content
    assert "Praxis Dr. Müller" in content and PRAXIS in content
    assert "KIM 1.5+" in content and "Zertifikat formal gültig" in content
    assert "mehr als 100 Treffer – bitte Suche eingrenzen" in content

    response = logged_in.get(reverse("directory:search"), {"q": "müller"}, headers={"HX-Request": "true"})
    fragment = response.content.decode()
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section id="results"')
    assert "Praxis Dr. Müller" in fragment


def test_search_shows_broken_certificate_as_invalid(logged_in, vzd):
    content = logged_in.get(reverse("directory:search"), {"q": "Zertifikatstest Defekt"}).content.decode()
    assert "Zertifikat nicht verwendbar" in content
    assert "Zertifikat nicht lesbar" in content


@pytest.mark.parametrize("text", ["*", "(", ")", "\\", "Müller)(uid=*", "ß" * 3])
def test_search_hostile_input_never_errors(logged_in, vzd, text):
    response = logged_in.get(reverse("directory:search"), {"q": text}, headers={"HX-Request": "true"})
    assert response.status_code == 200


def test_search_nul_and_too_long_input_are_form_errors(logged_in, vzd):
    response = logged_in.get(reverse("directory:search"), {"q": "ab\x00c"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    response = logged_in.get(reverse("directory:search"), {"q": "x" * 2000}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "höchstens 200 Zeichen" in response.content.decode()


def test_search_directory_down_is_a_message_not_an_error_page(logged_in, vzd_down):
    response = logged_in.get(reverse("directory:search"), {"q": "Müller"})
    assert response.status_code == 200
    assert "Das Verzeichnis (VZD) ist nicht erreichbar" in response.content.decode()


def test_search_directory_slow_is_a_message(logged_in, vzd_silent):
    response = logged_in.get(reverse("directory:search"), {"q": "Müller"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "antwortet nicht rechtzeitig" in response.content.decode()


def test_picker_results_and_pick(logged_in, vzd):
    response = logged_in.get(reverse("directory:picker"), {"picker_q": "müller", "field": "to"})
    content = response.content.decode()
    assert PRAXIS in content and "KIM 1.5+" in content
    assert "directory/auswahl/uebernehmen/?field=to&amp;address=praxis.mueller%40" in content

    response = logged_in.get(reverse("directory:picker-pick"), {"field": "to", "address": PRAXIS})
    chip = response.content.decode()
    assert f'<input type="hidden" name="to" value="{PRAXIS}">' in chip
    assert "Zertifikat formal gültig" in chip and "KIM 1.5+" in chip


@pytest.mark.parametrize("text", ["ab\x00c", "x" * 201])
def test_picker_refused_input_is_a_message_not_the_favorites(logged_in, vzd, user, text):
    contact_favorite_add(user=user, address=PRAXIS)
    response = logged_in.get(reverse("directory:picker"), {"picker_q": text, "field": "to"})
    content = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' in content and "Suche: " in content
    assert PRAXIS not in content


def test_picker_refuses_invalid_certificate_and_unknown_address(logged_in, vzd):
    chip = logged_in.get(
        reverse("directory:picker-pick"), {"field": "to", "address": "zertifikatstest-defekt@tisim.kim.telematik-test"}
    ).content.decode()
    assert "Zertifikat nicht verwendbar" in chip and 'type="hidden"' not in chip
    chip = logged_in.get(
        reverse("directory:picker-pick"), {"field": "to", "address": "niemand@nirgends.kim.telematik-test"}
    ).content.decode()
    assert "steht nicht im Verzeichnis" in chip and 'type="hidden"' not in chip


def test_picker_empty_query_lists_favorites(logged_in, vzd, user):
    contact_favorite_add(user=user, address=PRAXIS)
    content = logged_in.get(reverse("directory:picker"), {"picker_q": "", "field": "to"}).content.decode()
    assert "Favoriten" in content and PRAXIS in content


def test_favorite_toggle_records_user(logged_in, vzd, user):
    url = reverse("directory:favorite-toggle")
    response = logged_in.post(url, {"address": PRAXIS, "action": "add"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'aria-pressed="true"' in response.content.decode()
    contact = Contact.objects.get()
    assert contact.is_favorite and contact.created_by == user

    response = logged_in.post(url, {"address": PRAXIS, "action": "remove"}, headers={"HX-Request": "true"})
    assert 'aria-pressed="false"' in response.content.decode()
    assert not Contact.objects.get().is_favorite


def test_swapped_favorite_form_returns_to_the_page_it_sits_on(logged_in, vzd):
    # The form htmx swaps in is the one a quick Enter (before htmx binds it) or a page without script sends
    # natively: its way back must be the search page, not the toggle's own address, which only takes POST (405).
    url = reverse("directory:favorite-toggle")
    page = f"{reverse('directory:search')}?q=m%C3%BCller"
    swapped = logged_in.post(
        url, {"address": PRAXIS, "action": "add", "next": page}, headers={"HX-Request": "true"}
    ).content.decode()
    assert f'name="next" value="{escape(page)}"' in swapped
    assert f'value="{url}"' not in swapped

    hostile = logged_in.post(
        url, {"address": PRAXIS, "action": "remove", "next": "https://evil.example/"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert f'name="next" value="{reverse("directory:contacts")}"' in hostile


def test_favorite_toggle_directory_down_shows_message(logged_in, vzd_down):
    response = logged_in.post(
        reverse("directory:favorite-toggle"), {"address": PRAXIS, "action": "add"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "nicht erreichbar" in response.content.decode()
    assert not Contact.objects.exists()


def test_contacts_page_lists_with_flags_in_constant_queries(logged_in, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def render(count: int) -> tuple[int, str]:
        for i in range(Contact.objects.count(), count):
            Contact.objects.create(
                kim_address=f"c{i}@x.kim.telematik-test", display_name=f"Kontakt {i}", is_favorite=True,
                status=Contact.Status.VANISHED if i == 0 else Contact.Status.OK, created_by=user, updated_by=user,
            )  # fmt: skip
        with CaptureQueriesContext(connection) as ctx:
            response = logged_in.get(reverse("directory:contacts"))
        return len(ctx.captured_queries), response.content.decode()

    queries_one, _ = render(1)
    queries_many, content = render(6)
    assert queries_one == queries_many  # no query per contact
    assert "nicht mehr im Verzeichnis" in content
    assert content.count("data-contact=") == 6


def test_a_contact_gone_from_the_directory_can_be_removed_and_only_such(logged_in):
    gone = Contact.objects.create(kim_address="weg@x.kim.telematik-test", display_name="Praxis Weg", status="vanished")
    there = Contact.objects.create(kim_address="da@x.kim.telematik-test", display_name="Praxis Da", status="changed")
    page = logged_in.get(reverse("directory:contacts")).content.decode()
    assert reverse("directory:contact-remove", args=[gone.pk]) in page
    assert reverse("directory:contact-remove", args=[there.pk]) not in page
    assert 'aria-label="Entfernen: Praxis Weg"' in page

    refused = logged_in.post(reverse("directory:contact-remove", args=[there.pk]), follow=True)
    assert "wurde nicht entfernt" in refused.content.decode()
    assert Contact.objects.filter(pk=there.pk).exists()
    assert logged_in.get(reverse("directory:contact-remove", args=[gone.pk])).status_code == 405

    removed = logged_in.post(reverse("directory:contact-remove", args=[gone.pk]), follow=True)
    assert "Kontakt entfernt." in removed.content.decode()
    assert not Contact.objects.filter(pk=gone.pk).exists()
    again = logged_in.post(reverse("directory:contact-remove", args=[gone.pk]), follow=True)  # a second tab
    assert "Dieser Kontakt ist schon entfernt." in again.content.decode()


def test_removing_a_contact_needs_a_sign_in(client):
    gone = Contact.objects.create(kim_address="weg@x.kim.telematik-test", display_name="Praxis Weg", status="vanished")
    response = client.post(reverse("directory:contact-remove", args=[gone.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Contact.objects.filter(pk=gone.pk).exists()


def test_acknowledge_unknown_contact_is_404(logged_in):
    assert logged_in.post(reverse("directory:contact-acknowledge", args=[999999])).status_code == 404


def test_acknowledge_resets_flag(logged_in):
    contact = Contact.objects.create(
        kim_address="a@x.kim.telematik-test", display_name="A", status="changed", changed_fields=["display_name"]
    )
    response = logged_in.post(reverse("directory:contact-acknowledge", args=[contact.pk]))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('directory:contacts')}#kontakt-{contact.pk}"  # back at its row
    contact.refresh_from_db()
    assert contact.status == "ok" and contact.changed_fields == []


def test_favorite_redirect_stays_on_this_site(client, django_user_model):
    """The 'next' field of the favourite form must not send users to another site."""
    from django.urls import reverse

    user = django_user_model.objects.create_user("redir", password="pw-secret-123")
    client.force_login(user)
    response = client.post(
        reverse("directory:favorite-toggle"),
        {"address": "nobody@example.kim.telematik-test", "next": "https://evil.example/"},
    )
    assert response.status_code == 302
    assert not response["Location"].startswith("https://evil.example")


@pytest.fixture
def entry_with_plain_mail(vzd_admin):
    """An entry publishing a KIM address and, in "mail" too, an ordinary address and a value that is none."""
    vzd_admin.search("dc=data,dc=vzd", f"(mail={PRAXIS})", attributes=["userCertificate;binary"])
    cert = vzd_admin.response[0]["raw_attributes"]["userCertificate;binary"][0]
    uid = str(uuid.uuid4())
    kim = f"quirl-{uid[:8]}@tisim.kim.telematik-test"
    dn = f"uid={uid},dc=data,dc=vzd"
    ok = vzd_admin.add(
        dn,
        ["top", "vzd-komleview"],
        {
            "uid": uid,
            "telematikID": "1-200000000000004711",  # the certificate's
            "displayName": "Praxis Quirlstadt",
            "l": "Quirlstadt",
            "mail": [kim, "info@praxis-quirlstadt.de", "keine-adresse"],
            "userCertificate;binary": cert,
        },
    )
    assert ok, vzd_admin.result
    yield kim
    vzd_admin.delete(dn)


def test_mail_values_that_are_no_kim_address_cannot_be_picked_or_remembered(logged_in, vzd, entry_with_plain_mail):
    kim = entry_with_plain_mail
    page = logged_in.get(reverse("directory:search"), {"q": "Quirlstadt"}).content.decode()
    assert f'name="address" value="{kim}"' in page
    assert 'name="address" value="info@praxis-quirlstadt.de"' not in page
    assert 'name="address" value="keine-adresse"' not in page
    assert "info@praxis-quirlstadt.de, keine-adresse" in page  # still shown, apart from the KIM addresses

    picker = logged_in.get(reverse("directory:picker"), {"picker_q": "Quirlstadt", "field": "to"}).content.decode()
    assert picker.count("Auswählen") == 1 and "praxis-quirlstadt.de" not in picker

    pick = {"field": "to", "address": "info@praxis-quirlstadt.de"}
    chip = logged_in.get(reverse("directory:picker-pick"), pick).content.decode()
    assert "steht nicht im Verzeichnis" in chip and 'type="hidden"' not in chip
    response = logged_in.post(
        reverse("directory:favorite-toggle"),
        {"address": "info@praxis-quirlstadt.de", "action": "add"},
        headers={"HX-Request": "true"},
    )
    assert "steht nicht im Verzeichnis" in response.content.decode()
    assert not Contact.objects.exists()


def test_kim_only_leaves_out_entries_whose_mail_is_no_kim_address(logged_in, vzd, vzd_admin):
    uid = str(uuid.uuid4())
    dn = f"uid={uid},dc=data,dc=vzd"
    assert vzd_admin.add(
        dn,
        ["top", "vzd-komleview"],
        {"uid": uid, "telematikID": "1-200000000098", "displayName": "Praxis Nurpost", "mail": "info@nurpost.de"},
    ), vzd_admin.result
    try:
        page = logged_in.get(reverse("directory:search"), {"q": "Nurpost", "kim_only": "on"}).content.decode()
        assert "Praxis Nurpost" not in page and "Keine Treffer." in page
        picker = logged_in.get(reverse("directory:picker"), {"picker_q": "Nurpost", "field": "to"}).content.decode()
        assert "Praxis Nurpost" not in picker and "Keine Treffer." in picker
        # without the filter it is found, as an entry without KIM address
        page = logged_in.get(reverse("directory:search"), {"q": "Nurpost"}).content.decode()
        assert "Praxis Nurpost" in page and "Keine KIM-Adresse" in page
    finally:
        vzd_admin.delete(dn)


def test_contacts_page_says_what_changed_and_offers_seen_only_for_a_change(logged_in):
    hostile = '<img src=x onerror="alert(1)">' + "Ü" * 220  # 249 characters of 255
    changed = Contact.objects.create(
        kim_address="a@x.kim.telematik-test",
        display_name=hostile,
        status=Contact.Status.CHANGED,
        changed_fields=["addresses", "display_name"],
    )
    vanished = Contact.objects.create(
        kim_address="b@x.kim.telematik-test", display_name="Praxis Weg", status=Contact.Status.VANISHED
    )
    content = logged_in.get(reverse("directory:contacts")).content.decode()
    assert "Geändert: KIM-Adressen/Version, Name" in content
    assert "<img" not in content and escape(hostile) in content
    # "Gesehen" names its contact (one of many such buttons), and there is none for the contact that is gone.
    assert f'<tr id="kontakt-{changed.pk}"' in content and f'<tr id="kontakt-{vanished.pk}"' in content
    assert content.count(reverse("directory:contact-acknowledge", args=[changed.pk])) == 1
    assert reverse("directory:contact-acknowledge", args=[vanished.pk]) not in content
    assert f'aria-label="Gesehen: {escape(hostile)}">Gesehen</button>' in content
