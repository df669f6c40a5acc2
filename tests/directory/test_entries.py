"""The one KIM-version lookup per address, as services and views use it: kimData ("<mail>,<version>[,<tags>]") and
komLeData ("<version>,<mail>"); and specialty labels from the card type's own code system."""

from __future__ import annotations

import pytest

from directory.clients.vzd import VzdRecord
from directory.entries import entry_from_record

PRAXIS = "Praxis.Mueller@praxis-mueller.kim.telematik-test"
ALT = "empfang@praxis-mueller.kim.telematik-test"
OLD = "alt@praxis-mueller.kim.telematik-test"


def _entry(**attributes: list[str]):
    base = {"uid": ["u-1"], "telematikid": ["1-200000000000004711"], "displayname": ["Praxis Dr. Müller"]}
    return entry_from_record(VzdRecord(dn="uid=u-1,dc=data,dc=vzd", attributes={**base, **attributes}))


def test_version_comes_from_komledata_per_address_whatever_the_case():
    entry = _entry(
        mail=[PRAXIS, ALT, OLD],
        komledata=[f"1.5+,{PRAXIS.lower()}", f" 1.5 , {ALT.upper()}", f"1.0,{OLD}"],
    )
    assert entry.kim_version(PRAXIS) == "1.5+"
    assert entry.kim_version(PRAXIS.upper()) == "1.5+"
    assert entry.kim_version(f"  {ALT}  ") == "1.5"
    assert entry.kim_version(OLD) == "1.0"


def test_address_without_komledata_or_with_an_unknown_version_is_kim_1_0():
    entry = _entry(mail=[PRAXIS, ALT], komledata=[f"2.7,{ALT}"])
    assert entry.kim_version(PRAXIS) == "1.0"
    assert entry.kim_version(ALT) == "1.0"


def test_address_the_entry_does_not_have_has_no_version():
    # komLeData naming an address the entry does not publish as mail does not make it one of its addresses.
    entry = _entry(mail=[PRAXIS], komledata=[f"1.5+,{ALT}"])
    assert entry.kim_version(ALT) == ""
    assert entry.kim_version("someone@else.kim.telematik-test") == ""


def test_kimdata_alone_carries_version_and_application_tags():
    entry = _entry(mail=[PRAXIS, ALT], kimdata=[f"{PRAXIS.lower()},2.0,eAU|eEB", f" {ALT} , 1.5+ "])
    assert entry.kim_version(PRAXIS) == "2.0"
    assert entry.kim_version(ALT) == "1.5+"
    praxis, alt = entry.addresses
    assert praxis.app_tags == ("eAU", "eEB") and not praxis.large_messages
    assert alt.app_tags == () and alt.large_messages


def test_kimdata_wins_over_komledata_for_the_same_address():
    entry = _entry(mail=[PRAXIS, OLD], komledata=[f"1.5,{PRAXIS}", f"1.0,{OLD}"], kimdata=[f"{PRAXIS},2.0"])
    assert entry.kim_version(PRAXIS) == "2.0"
    assert entry.kim_version(OLD) == "1.0"


@pytest.mark.parametrize("value", [f"{PRAXIS},3.7", f"{PRAXIS}", "2.0", f"2.0,{PRAXIS}", f"{PRAXIS},2.0x"])
def test_malformed_kimdata_is_ignored(value):
    # "2.0,<mail>" is komLeData's order, not kimData's: it names no address here.
    entry = _entry(mail=[PRAXIS], komledata=[f"1.5,{PRAXIS}"], kimdata=[value])
    assert entry.kim_version(PRAXIS) == "1.5"


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("urn:as:1.2.276.0.76.5.514:141114", "FA Innere Medizin und Kardiologie"),
        ("urn:as:1.2.276.0.76.5.514:142007", "FA Innere Medizin mit SP Kardiologie"),
        ("urn:as:1.2.276.0.76.5.514:011001", "FA Allgemeinmedizin"),
        ("urn:as:1.3.6.1.4.1.19376.3.276.1.5.11:82", "Psychologischer Psychotherapeut"),
        ("urn:as:1.2.276.0.76.5.492:1", "Zahnarzt"),
        ("urn:psc:1.3.6.1.4.1.19376.3.276.1.5.4:KARD", "Kardiologie"),
        ("urn:psc:1.3.6.1.4.1.19376.3.276.1.5.4:ALLG", "Allgemeinmedizin"),
        ("10", "Offizin-Apotheke"),
    ],
)
def test_specialties_are_labelled_from_their_own_code_system(value, label):
    assert _entry(specialization=[value]).specialties == [label]


@pytest.mark.parametrize("other", ["info@praxis-mueller.de", "keine-adresse", "praxis@kim.telematik.example.org"])
def test_mail_values_that_are_no_kim_address_are_not_recipients(other):
    entry = _entry(mail=[other, PRAXIS], komledata=[f"1.5,{other}"])
    assert [a.address for a in entry.addresses] == [PRAXIS]
    assert entry.kim_version(other) == ""
    assert entry.other_mail == [other]


@pytest.mark.parametrize(
    "published", ["Praxis@Example.KIM.Telematik-Test", "EMPFANG@PRAXIS.KIM.TELEMATIK", "praxis@example.kim.telematik"]
)
def test_a_kim_address_in_any_case_is_a_recipient_kept_as_published(published):
    # The directory and compose share one pattern (kimportal.validators.KIM_ADDRESS): what the directory lists as a
    # recipient, compose accepts typed, and the other way round.
    from mailbox.services.compose import address_problem

    entry = _entry(mail=[published], kimdata=[f"{published.lower()},1.5"])
    assert [a.address for a in entry.addresses] == [published]
    assert entry.other_mail == []
    assert entry.kim_version(published.lower()) == "1.5"
    assert address_problem(published) == ""


@pytest.mark.parametrize(
    "other", ["Praxis@Example.KIM.Telematik.de", "praxis@example.kim.telematik-tst", "@x.kim.telematik"]
)
def test_a_mail_value_compose_refuses_is_no_recipient_either(other):
    from mailbox.services.compose import address_problem

    entry = _entry(mail=[other])
    assert entry.addresses == [] and entry.other_mail == [other]
    assert "keine KIM-Adresse" in address_problem(other)
