"""The search selector against the real slapd (20,000 generated entries)."""

from __future__ import annotations

import uuid

import pytest

from directory.query import Criteria
from directory.selectors import TRUNCATED_MESSAGE, directory_search

pytestmark = pytest.mark.slapd


def _names(outcome):
    return [e.display_name for e in outcome.entries]


def test_mueller_finds_praxis_mueller_first_with_version_and_certificate(vzd):
    outcome = directory_search(Criteria(q="müller"))
    assert outcome.searched and not outcome.error
    first = outcome.entries[0]
    assert first.display_name == "Praxis Dr. Müller"
    assert first.kind == "Arztpraxis"
    assert first.specialties == ["Allgemeinmedizin"]
    assert first.city == "Berlin"
    [address] = first.addresses
    assert address.address == "praxis.mueller@praxis-mueller.kim.telematik-test"
    assert address.version == "1.5+" and address.large_messages
    assert first.cert.status == "valid"
    assert first.cert.label == "Zertifikat formal gültig"


def test_more_than_100_hits_is_a_notice_and_shows_the_first_results(vzd):
    outcome = directory_search(Criteria(q="Praxis"))
    assert outcome.truncated
    assert outcome.total == 100
    assert TRUNCATED_MESSAGE in outcome.notices
    assert len(outcome.entries) == 20
    assert not outcome.error


def test_ranking_exact_word_before_substring(vzd):
    # "Müller" as a whole word ranks above names merely containing it ("Müller-…" counts as word start)
    outcome = directory_search(Criteria(q="Klinikum Demo"))
    assert outcome.entries[0].display_name == "Klinikum Demo"
    scores = [e.score for e in outcome.entries]
    assert scores == sorted(scores, reverse=True)


def test_free_text_combination_with_specialty_word(vzd):
    outcome = directory_search(Criteria(q="Kardiologie Berlin Demo"))
    assert _names(outcome) == ["Klinikum Demo"]
    entry = outcome.entries[0]
    assert [a.address for a in entry.addresses] == [
        "kardiologie@klinikum-demo.kim.telematik-test",
        "aufnahme@klinikum-demo.kim.telematik-test",
    ]
    assert [a.version for a in entry.addresses] == ["1.5+", "1.5"]
    assert "Kardiologie" in entry.specialties


def test_postal_code_telematik_id_and_address(vzd):
    assert "Praxis Dr. Müller" in _names(directory_search(Criteria(q="10117 Müller")))
    assert _names(directory_search(Criteria(q="1-200000000000004711"))) == ["Praxis Dr. Müller"]
    assert _names(directory_search(Criteria(q="aufnahme@klinikum-demo.kim.telematik-test"))) == ["Klinikum Demo"]


def test_structured_filters(vzd):
    outcome = directory_search(Criteria(name="Müller", place="Berlin", kind="arztpraxis", kim_only=True))
    assert "Praxis Dr. Müller" in _names(outcome)
    assert all(e.kind == "Arztpraxis" and e.city == "Berlin" and e.addresses for e in outcome.entries)
    outcome = directory_search(Criteria(place="10249", specialty="1.3.6.1.4.1.19376.3.276.1.5.4:KARD"))
    assert "Klinikum Demo" in _names(outcome)


@pytest.mark.parametrize("text", ["*", "**", "(", ")", "\\", "\x00", "()", ")(", "", "   ", "ab", "\u200b\u200b\u200b"])
def test_nothing_searchable_means_no_search_and_no_error(vzd, text):
    outcome = directory_search(Criteria(q=text))
    assert not outcome.searched
    assert not outcome.error
    assert outcome.entries == []


@pytest.mark.parametrize(
    "text",
    ["Mül*ler", "Müller)(uid=*", "(displayName=*)", "back\\slash", "nul\x00byte", "*)(|(mail=*", "x" * 2000],
)
def test_hostile_input_is_escaped_and_finds_nothing(vzd, text):
    outcome = directory_search(Criteria(q=text))
    assert outcome.searched
    assert not outcome.error
    assert outcome.entries == []


def test_long_input_with_many_words(vzd):
    outcome = directory_search(Criteria(q=" ".join(["Müller"] * 400)))
    assert not outcome.error
    assert outcome.entries and outcome.entries[0].display_name == "Praxis Dr. Müller"


@pytest.mark.parametrize(
    ("term", "needle"), [("Weiß", "weiß"), ("Groß", "groß"), ("Köhler", "köhler"), ("MÜLLER", "müller")]
)
def test_umlauts_and_sharp_s(vzd, term, needle):
    outcome = directory_search(Criteria(q=term))
    assert outcome.entries
    assert any(needle in e.display_name.lower() for e in outcome.entries)


def test_transliterated_input_finds_addresses(vzd):
    outcome = directory_search(Criteria(q="praxis-mueller"))
    assert "Praxis Dr. Müller" in _names(outcome)


def test_broken_expired_and_foreign_certificates_are_invalid_not_a_crash(vzd):
    outcome = directory_search(Criteria(q="Zertifikatstest"))
    by_name = {e.display_name: e for e in outcome.entries}
    assert set(by_name) == {"Zertifikatstest Defekt", "Zertifikatstest Abgelaufen", "Zertifikatstest Fremd-ID"}
    for entry in by_name.values():
        assert entry.cert.status == "invalid"
        assert entry.cert.label == "Zertifikat nicht verwendbar"
        assert not entry.can_receive
    assert by_name["Zertifikatstest Defekt"].cert.reasons == ["Zertifikat nicht lesbar"]
    assert by_name["Zertifikatstest Abgelaufen"].cert.reasons == ["Zertifikat abgelaufen"]
    assert by_name["Zertifikatstest Fremd-ID"].cert.reasons == ["Telematik-ID im Zertifikat passt nicht zum Eintrag"]


def test_directory_down_gives_a_german_message(vzd_down):
    outcome = directory_search(Criteria(q="Müller"))
    assert outcome.error == "Das Verzeichnis (VZD) ist nicht erreichbar. Bitte versuchen Sie es später noch einmal."
    assert outcome.entries == []


def test_directory_slow_gives_a_timeout_message(vzd_silent):
    outcome = directory_search(Criteria(q="Müller"))
    assert outcome.error.startswith("Das Verzeichnis (VZD) antwortet nicht rechtzeitig")


def test_short_terms_are_reported(vzd):
    outcome = directory_search(Criteria(q="Dr Müller"))
    assert outcome.ignored == ["Dr"]
    assert any("mindestens 3 Zeichen" in n for n in outcome.notices)


def test_terms_beyond_the_limit_are_reported_as_not_searched_not_as_too_short(vzd):
    words = ["Praxis", "Müller", "Berlin", "Friedrichstraße", "Anna", "Hausarztpraxis", "Allgemeinmedizin", "Arzt"]
    outcome = directory_search(Criteria(q=" ".join([*words, "Kardiologie", "Hamburg"])))
    assert outcome.ignored == []
    assert "Nur die ersten 8 Suchbegriffe werden gesucht, nicht gesucht: Kardiologie, Hamburg" in outcome.notices
    assert not any("mindestens 3 Zeichen" in n for n in outcome.notices)


def test_certificate_states_are_cached_until_the_entry_changes(vzd, vzd_admin, extra_entry, monkeypatch):
    import ldap3

    from directory.clients.vzd import VzdClient

    dn, address = extra_entry
    calls: list[str] = []
    original = VzdClient.search

    def counting(self, ldap_filter, attributes):
        calls.append(ldap_filter)
        return original(self, ldap_filter, attributes)

    monkeypatch.setattr(VzdClient, "search", counting)
    [entry] = directory_search(Criteria(q=address)).entries
    assert entry.cert.status == "valid"
    assert len(calls) == 2  # list + certificates

    calls.clear()
    [entry] = directory_search(Criteria(q=address)).entries
    assert entry.cert.status == "valid"
    assert len(calls) == 1  # certificates came from the cache

    vzd_admin.search(
        "dc=data,dc=vzd",
        "(mail=zertifikatstest-defekt@tisim.kim.telematik-test)",
        attributes=["userCertificate;binary"],
    )
    broken = vzd_admin.response[0]["raw_attributes"]["userCertificate;binary"][0]
    assert vzd_admin.modify(
        dn,
        {
            "userCertificate;binary": [(ldap3.MODIFY_REPLACE, [broken])],
            "changeDateTime": [(ldap3.MODIFY_REPLACE, ["2026-11-29T10:00:00.000000+01:00"])],
        },
    ), vzd_admin.result
    calls.clear()
    [entry] = directory_search(Criteria(q=address)).entries
    assert len(calls) == 2
    assert entry.cert.status == "invalid"


def _uids(criteria: Criteria) -> set[str]:
    outcome = directory_search(criteria, limit=100)
    assert not outcome.error and not outcome.truncated, criteria  # under the cap: the whole result is compared
    assert outcome.total == len(outcome.entries)
    return {e.uid for e in outcome.entries}


@pytest.mark.parametrize(
    ("one", "other"),
    [("Groß", "Gross"), ("Weißenfels", "Weissenfels"), ("Strauß", "Strauss"), ("Füßer", "Fuesser")],
)
def test_both_spellings_find_the_same_entries(vzd_demo, one, other):
    # On the demo data the two spellings used to give 45 vs 36 ("Groß"/"Gross") and 94 vs 14 ("Weißenfels"/
    # "Weissenfels") hits, and the place filter "Weissenfels" none.
    for field in ("q", "name", "place") if "fels" in one else ("q", "name"):
        found = _uids(Criteria(**{field: one}))
        assert found, (field, one)
        assert _uids(Criteria(**{field: other})) == found, field


def test_place_filter_finds_weissenfels_typed_without_sharp_s(vzd_demo):
    outcome = directory_search(Criteria(place="Weissenfels"))
    assert outcome.entries and {e.city for e in outcome.entries} == {"Weißenfels"}


def test_muller_without_umlaut_is_another_name(vzd):
    names = {e.display_name for e in directory_search(Criteria(q="Muller"), limit=100).entries}
    assert not any("Müller" in n for n in names)


def test_kim_2_0_published_in_kimdata_only(vzd):
    [entry] = directory_search(Criteria(q="aerztehaus.gross@tisim.kim.telematik-test")).entries
    [address] = entry.addresses
    assert (address.version, address.app_tags) == ("2.0", ("eAU", "eEB"))
    assert entry.cert.status == "valid"


def test_hba_specialty_from_the_physicians_code_system(vzd):
    outcome = directory_search(Criteria(q="Kardiologie Weißenfels"))
    hba = next(e for e in outcome.entries if e.display_name == "Groß, Sabine")
    assert hba.specialties == ["FA Innere Medizin und Kardiologie"]
    # the HBA filter asks for urn:as with the Facharzttitel, and finds her
    found = directory_search(Criteria(specialty="hba:1.2.276.0.76.5.514:141114", place="Weissenfels"), limit=100)
    assert "Groß, Sabine" in [e.display_name for e in found.entries]
    assert {(e.city, tuple(e.specialties)) for e in found.entries} == {
        ("Weißenfels", ("FA Innere Medizin und Kardiologie",))
    }


@pytest.mark.parametrize(
    "pasted",
    [
        "Mu\u0308ller",  # decomposed, as a Mac or a PDF hands it over
        "Mül\u00adler",  # soft hyphen from a web page or a word processor
        "\u200bMüller\u200b",  # zero-width spaces
        "\ufeffMüller",  # byte order mark at the start of a paste
        "Ｍüｌｌｅｒ",  # full-width letters
    ],
)
def test_pasted_text_finds_what_the_typed_word_finds(vzd, pasted):
    typed = directory_search(Criteria(q="Müller"))
    outcome = directory_search(Criteria(q=pasted))
    assert not outcome.error and outcome.notices == typed.notices
    assert _names(outcome) == _names(typed)


def test_pasted_text_in_the_structured_fields(vzd):
    typed = directory_search(Criteria(name="Müller", place="Berlin"))
    pasted = directory_search(Criteria(name="Mu\u0308l\u00adler", place="Ber\u200blin"))
    assert _names(typed) and _names(pasted) == _names(typed)


@pytest.mark.parametrize(
    ("attributes", "name"),
    [
        ({"cn": "Praxis Ohnename"}, "Praxis Ohnename"),
        ({"organization": "Klinikum Ohnename"}, "Klinikum Ohnename"),
        ({"displayName": "-", "cn": "-", "organization": "Klinikum Strich"}, "Klinikum Strich"),
        ({}, "1-200000000099"),
    ],
)
def test_an_entry_without_display_name_is_named_by_cn_or_organization(vzd, vzd_admin, attributes, name):
    # displayName and cn are optional in the VZD schema; only uid and telematikID are mandatory.
    uid = str(uuid.uuid4())
    dn = f"uid={uid},dc=data,dc=vzd"
    assert vzd_admin.add(
        dn,
        ["top", "vzd-komleview"],
        {"uid": uid, "telematikID": "1-200000000099", "l": "Namenlosstadt", **attributes},
    ), vzd_admin.result
    try:
        outcome = directory_search(Criteria(q="Namenlosstadt"))
        assert _names(outcome) == [name]
    finally:
        vzd_admin.delete(dn)
