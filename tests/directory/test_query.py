from __future__ import annotations

import pytest

from directory import ldapfilter as f
from directory.query import Criteria, build_filter, parse_free_text


def test_free_text_recognises_postal_code_telematik_id_address_and_terms():
    parsed = parse_free_text("Müller 10117 1-20004711 praxis.mueller@praxis-mueller.kim.telematik-test Berlin ab")
    assert parsed.postal_codes == ["10117"]
    assert parsed.telematik_ids == ["1-20004711"]
    assert parsed.addresses == ["praxis.mueller@praxis-mueller.kim.telematik-test"]
    assert parsed.terms == ["Müller", "Berlin"]
    assert parsed.ignored == ["ab"]


def test_free_text_terms_beyond_the_limit_are_surplus_not_ignored():
    parsed = parse_free_text("eins zwei drei vier fünf sechs sieben acht neun zehn ab")
    assert parsed.terms == ["eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht"]
    assert parsed.surplus == ["neun", "zehn"]
    assert parsed.ignored == ["ab"]


def test_free_text_telematik_ids_of_other_shapes():
    parsed = parse_free_text("9-2KIM-BITMARCK-01 11-SMC-B-Testkarte-883110000138398 5-2-0000000000004711")
    assert parsed.telematik_ids == ["9-2KIM-BITMARCK-01", "11-SMC-B-Testkarte-883110000138398", "5-2-0000000000004711"]
    assert parsed.terms == []


def test_terms_are_anded_and_each_term_ors_over_indexed_attributes():
    built = build_filter(Criteria(q="Müller Berlin"))
    flt = built.ldap_filter
    assert flt.startswith("(&(|")
    for attr in ("displayName", "organization", "l", "mail"):
        assert f"({attr}=*müller*)" in flt
        assert f"({attr}=*berlin*)" in flt
    # the transliteration finds "mueller" in KIM addresses
    assert "(mail=*mueller*)" in flt
    # unindexed attributes never appear in an OR
    assert "street" not in flt


def test_specialty_word_selects_specialty_codes():
    flt = build_filter(Criteria(q="Kardiologie")).ldap_filter
    assert "(specialization=urn:psc:1.3.6.1.4.1.19376.3.276.1.5.4:KARD)" in flt
    # physicians (HBA) carry their Facharzttitel, a code system of their own
    assert "(specialization=urn:as:1.2.276.0.76.5.514:141114)" in flt
    assert "(specialization=urn:as:1.2.276.0.76.5.514:142007)" in flt
    # the SMC-B code is never asked for under the HBA prefix: no such value exists
    assert "urn:as:1.3.6.1.4.1.19376.3.276.1.5.4" not in flt


def test_kind_word_selects_profession_oid():
    flt = build_filter(Criteria(q="Krankenhaus Berlin")).ldap_filter
    assert "(professionOID=1.2.276.0.76.4.53)" in flt


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("abc*", r"abc\2a"),
        ("ab(c", r"ab\28c"),
        ("ab)c", r"ab\29c"),
        ("ab\\c", r"ab\5cc"),
        ("ab\x00c", r"ab\00c"),
    ],
)
def test_user_strings_are_escaped(text, escaped):
    flt = build_filter(Criteria(q=text)).ldap_filter
    assert f"(displayName=*{escaped}*)" in flt
    # nothing unescaped survives: every '(' opens a filter component, every '*' is a wildcard we put there
    assert "\x00" not in flt
    assert flt.count("(") == flt.count(")")


@pytest.mark.parametrize("field", ["name", "organization", "place"])
def test_structured_fields_are_escaped(field):
    flt = build_filter(Criteria(**{field: "x*)(uid=*"})).ldap_filter
    assert r"x\2a\29\28uid=\2a" in flt
    assert "(uid=*" not in flt


def test_lone_wildcards_and_short_terms_search_nothing():
    for text in ("*", "**", "a", "ab", "( )", "\\", ""):
        built = build_filter(Criteria(q=text))
        assert built.ldap_filter is None, text


def test_kim_only_alone_is_not_a_search_but_is_anded_otherwise():
    assert build_filter(Criteria(kim_only=True)).ldap_filter is None
    flt = build_filter(Criteria(q="Müller", kim_only=True)).ldap_filter
    assert flt.endswith("(mail=*))")


def test_place_is_postal_code_or_city():
    assert "(postalCode=10117)" in build_filter(Criteria(place="10117")).ldap_filter
    assert "(postalCode=101*)" in build_filter(Criteria(place="101")).ldap_filter
    assert "(l=*berlin*)" in build_filter(Criteria(place="Berlin")).ldap_filter


def test_kind_and_specialty_filters():
    flt = build_filter(Criteria(kind="krankenhaus", specialty="1.3.6.1.4.1.19376.3.276.1.5.4:KARD")).ldap_filter
    assert "(professionOID=1.2.276.0.76.4.53)" in flt
    assert "(specialization=urn:psc:1.3.6.1.4.1.19376.3.276.1.5.4:KARD)" in flt


def test_filter_helpers_reject_bad_attribute_names():
    with pytest.raises(ValueError):
        f.eq("cn)(uid=*", "x")
