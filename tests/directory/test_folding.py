"""Spelling variants: both spellings of a German name lead to the same set of LDAP alternatives."""

from __future__ import annotations

import pytest

from directory import codes
from directory.folding import MAX_SPELLINGS, fold, spellings
from directory.query import MIN_TERM, Criteria, build_filter


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Groß", "Gross"),
        ("Weißenfels", "Weissenfels"),
        ("Straße", "Strasse"),
        ("Müller", "Mueller"),
        ("Köhler", "Koehler"),
        ("Jäger", "Jaeger"),
        ("Müllerstraße", "Muellerstrasse"),
        ("Müllerstraße", "Müllerstrasse"),
        ("GROSS", "groß"),
    ],
)
def test_both_spellings_give_the_same_alternatives(one, other):
    assert set(spellings(one)) == set(spellings(other))
    assert fold(one) == fold(other)


def test_the_typed_and_the_transliterated_form_come_first():
    assert spellings("Weißenfels") == ["weißenfels", "weissenfels"]
    assert spellings("Gross") == ["gross", "groß"]
    assert spellings("Mueller") == ["mueller", "müller"]


def test_a_plain_vowel_is_never_umlauted():
    # "Muller" is a name of its own, not a way to write "Müller".
    assert spellings("Muller") == ["muller"]
    assert fold("Muller") != fold("Müller")


@pytest.mark.parametrize("word", ["Bauer", "Feuer", "Quelle", "Steuer", "Neubauer"])
def test_diphthongs_are_not_taken_for_umlauts(word):
    assert spellings(word) == [word.lower()]


def test_every_ss_may_be_a_sharp_s_in_any_combination():
    assert set(spellings("Schlossstrasse")) == {
        "schlossstrasse",
        "schloßstraße",
        "schloßstrasse",
        "schlossstraße",
    }


@pytest.mark.parametrize("term", ["ss" * 150, "aeoeue" * 50, "Müßiggängerstraßenfußgängerübergänge", "ß" * 300])
def test_a_hostile_term_is_capped(term):
    out = spellings(term)
    assert 1 <= len(out) <= MAX_SPELLINGS
    assert len(set(out)) == len(out)


def test_spellings_shorter_than_the_index_minimum_are_dropped():
    # "Koe" → "kö" would be a two-letter substring: slapd's index starts at three, it would scan everything.
    assert spellings("Koe", min_length=MIN_TERM) == ["koe"]


def test_a_query_of_many_foldable_terms_stays_small():
    words = " ".join(["Weißenfelsstraße", "Müllerstraße", "Großmüller", "Schloßstraße"] * 2)
    built = build_filter(Criteria(q=words, name="Grossmann", organization="Strassenbau", place="Weissenfels"))
    assert built.ldap_filter is not None
    # 11 text terms share a budget of 24 spellings, each at least two: one LDAP filter of bounded size.
    assert built.ldap_filter.count("=*") <= 11 * 2 * 4 + 8
    assert len(built.ldap_filter) < 12_000


@pytest.mark.parametrize("field", ["q", "name", "organization", "place"])
def test_ldap_special_characters_are_escaped_in_every_spelling(field):
    flt = build_filter(Criteria(**{field: "Groß*)(uid=*\\"})).ldap_filter
    assert r"groß\2a\29\28uid=\2a\5c" in flt
    assert r"gross\2a\29\28uid=\2a\5c" in flt
    assert "(uid=*" not in flt
    assert flt.count("(") == flt.count(")")


@pytest.mark.parametrize(("field", "attr"), [("q", "displayName"), ("name", "cn"), ("organization", "organization")])
def test_free_text_and_filters_fold_the_same_way(field, attr):
    for typed in ("Weißenfels", "Weissenfels"):
        flt = build_filter(Criteria(**{field: typed})).ldap_filter
        assert f"({attr}=*weißenfels*)" in flt and f"({attr}=*weissenfels*)" in flt


def test_place_filter_folds_too():
    for typed in ("Weißenfels", "Weissenfels"):
        flt = build_filter(Criteria(place=typed)).ldap_filter
        assert sorted(flt.removeprefix("(|").removesuffix(")").replace(")(", ") (").split()) == [
            "(l=*weissenfels*)",
            "(l=*weißenfels*)",
        ]


def test_specialty_and_kind_words_fold():
    labels = [s.label for s in codes.specialties_matching("Gynaekologie")]
    assert labels == [s.label for s in codes.specialties_matching("Gynäkologie")]
    assert "FA Gynäkologie und Geburtshilfe" in labels
    assert codes.kinds_for_word("Aerztin") == codes.kinds_for_word("Ärztin") != []
