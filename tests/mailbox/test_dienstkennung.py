"""Dienstkennung labels: by application and message type, from the data file; unknown ones verbatim."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import translation

from mailbox.dienstkennung import DATA_FILE, UNKNOWN_CSS, badge_for, dienstkennung_badges, registry
from mailbox.models import DienstkennungLabel
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

# The registered values as the research digest lists them (gematik registry snapshot and newer IDs).
REGISTERED = [
    "KIM-Mail;Default;V1.0",
    "KIM-Mail;Abwesend;V1.0",
    "eAU;Lieferung;V1.0",
    "eAU;Storno-Arzt;V1.0",
    "eAU;Fehler-Kasse;V1.0",
    "Arztbrief;VHitG-Versand;V1.0",
    "Arztbrief;VHitG-Versand;V1.2",
    "Arztbrief;Eingangsbestaetigung;V1.0",
    "Arztbrief;Eingangsbestaetigung;V1.2",
    *(f"1ClickAbrechnung;{t};V2.0" for t in ("Lieferung", "Eingangsbestaetigung", "Rueckmeldung")),
    *(f"DiMus;{t};V1.0" for t in ("Lieferung", "Eingangsbestaetigung")),
    *(f"EBZ;{t};1.1.0" for t in ("PAR", "ZER", "KGL", "KBR", "KFO", "ANW", "FEH", "MIT", "QUI")),
    *(f"eDMP;{t};V1.0" for t in ("Einsendung", "Quittung")),
    *(
        f"eDokumentation-{q};{t};V2.0"
        for q in ("QSHLT", "QSKE", "QSMG", "QSHGV", "QSHGVK")
        for t in ("Lieferung", "Status", "Eingangsbestaetigung")
    ),
    *(f"abD-eHKS;{t};V1.0" for t in ("Einsendung", "Quittung")),
    *(f"eNachricht;{t};{v}" for t in ("Lieferung", "Eingangsbestaetigung") for v in ("V2.0", "V2.1")),
    *(f"ePVS;{t};V1.0" for t in ("Lieferung", "Rueckmeldung")),
    *(f"KZVAbr;{t};V1.0" for t in ("Lieferung", "Rueckmeldung")),
    *(f"LDT-Auftrag;{t};V1.0" for t in ("Lieferung", "Status", "Eingangsbestaetigung")),
    *(f"LDT-Befund;{t};V1.0" for t in ("Lieferung", "Trigger", "Status", "Eingangsbestaetigung")),
    *(
        f"QSPB;{t};V2.0"
        for t in (
            "Empfangsbestaetigung",
            "Empfangsbestaetigung_RM",
            "Miniprotokoll",
            "Lieferung",
            "Datenflussprotokoll",
            "Rueckmeldebericht",
        )
    ),
    *(f"UTeilnahme;{t};V1.0" for t in ("Lieferung", "Quittung")),
    "Selbsttest;Lieferung;V1.0",
    *(f"eEB;{t};V1.1" for t in ("Anfrage", "Bescheinigung", "Fehler")),
    *(f"eRezept;{t};V1.0" for t in ("Zuweisung", "Kommunikation", "Rezeptanforderung")),
    "PFL;ABR-01;1.0.0",
]


def _labels() -> dict[str, DienstkennungLabel]:
    return registry().applications


def test_every_registered_value_has_a_label_of_its_own_kind():
    for value in REGISTERED:
        badge = badge_for(value, _labels())
        assert badge is not None
        assert badge.css_class != UNKNOWN_CSS, value
        assert badge.title == value


def test_the_data_file_lists_the_registered_versions():
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    listed = {
        f"{e['application']};{e['message_type']};{v}".replace("*", "01") for e in data["entries"] for v in e["versions"]
    }
    assert set(REGISTERED) <= listed


@pytest.mark.parametrize(
    ("acknowledgement", "main"),
    [
        ("Arztbrief;Eingangsbestaetigung;V1.2", "Arztbrief;VHitG-Versand;V1.2"),
        ("KIM-Mail;Abwesend;V1.0", "KIM-Mail;Default;V1.0"),
        ("eAU;Fehler-Kasse;V1.0", "eAU;Lieferung;V1.0"),
        ("eAU;Storno-Arzt;V1.0", "eAU;Lieferung;V1.0"),
    ],
)
def test_message_type_changes_the_label(acknowledgement, main):
    first, second = badge_for(acknowledgement, _labels()), badge_for(main, _labels())
    assert first is not None and second is not None
    assert first.label != second.label


def test_labels_in_german_and_english():
    with translation.override("de"):
        assert badge_for("KIM-Mail;Abwesend;V1.0", _labels()).label == "Abwesenheitsnotiz"
        assert badge_for("Arztbrief;Eingangsbestaetigung;V1.2", _labels()).label == "eArztbrief: Eingangsbestätigung"
        assert badge_for("eAU;Fehler-Kasse;V1.0", _labels()).label == "eAU: Fehlermeldung der Krankenkasse"
    with translation.override("en"):
        assert badge_for("KIM-Mail;Abwesend;V1.0", _labels()).label == "Out-of-office reply"


@pytest.mark.django_db
def test_the_inbox_filter_offers_applications_in_the_users_language():
    # The filter lists applications (dienstkennung_badges); the data file has German and English names.
    from mailbox.dienstkennung import dienstkennung_badges

    with translation.override("de"):
        german = dienstkennung_badges()["kim-mail"].label
    with translation.override("en"):
        english = dienstkennung_badges()["kim-mail"].label
    assert (german, english) == ("KIM-Mail", "KIM mail")


@pytest.mark.parametrize(
    "variant",
    [
        " arztbrief ; EINGANGSBESTAETIGUNG ; v1.2 ",
        "Arztbrief;Eingangsbestaetigung;V1.3",  # a version the registry does not list (yet)
        "Arztbrief; Eingangsbestaetigung",  # no version at all
        "Arztbrief;Eingangsbestaetigung;V1.2;",
        "Arztbrief\t;\tEingangsbestaetigung;\r\n V1.2",
    ],
)
def test_odd_spacing_case_and_new_versions_keep_the_label(variant):
    badge = badge_for(variant, _labels())
    assert badge is not None
    assert badge.label == "eArztbrief: Eingangsbestätigung"
    assert badge.title == " ".join(variant.split()), "the value as written stays visible"


@pytest.mark.parametrize(
    "value",
    [
        "Neuartig;Test;V9.9",
        "Arztbrief;Unbekannt;V1.0",  # known application, unregistered message type: not "eArztbrief"
        "Arztbrief",
        "PFL;ABR-;1.0.0",
        ";;",
    ],
)
def test_unknown_values_are_shown_verbatim(value):
    badge = badge_for(value, _labels())
    assert badge is not None
    assert (badge.label, badge.css_class, badge.title) == (value, UNKNOWN_CSS, value)


def test_empty_value_has_no_badge():
    assert badge_for("  ", _labels()) is None


@pytest.mark.django_db
def test_admin_rows_colour_known_applications_and_name_new_ones():
    cache.delete("mailbox:dienstkennung-labels")
    DienstkennungLabel.objects.update_or_create(
        application="Arztbrief", defaults={"label": "Arztbrief (VHitG)", "css_class": "badge-special"}
    )
    DienstkennungLabel.objects.create(application="Hauskonvention", label="Hausintern", css_class="badge-neutral")
    labels = dienstkennung_badges()
    letter = badge_for("Arztbrief;VHitG-Versand;V1.2", labels)
    assert (letter.label, letter.css_class) == ("eArztbrief", "badge-special")
    own = badge_for("Hauskonvention;Rundschreiben;V1", labels)
    assert own.label == "Hausintern · Rundschreiben"


@pytest.mark.django_db
def test_unknown_dienstkennung_is_escaped_in_lists_and_detail(client):
    member = UserFactory(username="station")
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=member)
    hostile = b'<img src=x onerror=alert(1)>;"Typ";V1'
    raw = MAIL_WITH_PDF.replace(b"Arztbrief;VHitG-Versand;V1.2", hostile)
    msg = message_ingest(mailbox=box, uidl="u", raw=raw)
    client.force_login(member)
    for url in (reverse("mailbox:inbox"), reverse("mailbox:message-detail", args=[msg.pk])):
        html = client.get(url).content.decode()
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;;&quot;Typ&quot;;V1" in html


@pytest.mark.django_db
def test_acknowledgement_is_not_listed_as_the_letter(client):
    member = UserFactory(username="station")
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=member)
    raw = MAIL_WITH_PDF.replace(b"VHitG-Versand", b"Eingangsbestaetigung")
    message_ingest(mailbox=box, uidl="u", raw=raw)
    client.force_login(member)
    html = client.get(reverse("mailbox:inbox")).content.decode()
    assert "eArztbrief: Eingangsbestätigung" in html


@pytest.mark.django_db
def test_the_labels_are_read_once_per_cache_token_and_again_when_it_goes(django_assert_num_queries):
    cache.delete("mailbox:dienstkennung-labels")
    with django_assert_num_queries(1):
        first = dienstkennung_badges()
    with django_assert_num_queries(0):
        assert dienstkennung_badges() is first
    DienstkennungLabel.objects.create(application="Hauskonvention", label="Hausintern", css_class="badge-neutral")
    cache.delete("mailbox:dienstkennung-labels")  # as when the minute is over
    with django_assert_num_queries(1):
        assert dienstkennung_badges()["hauskonvention"].label == "Hausintern"
