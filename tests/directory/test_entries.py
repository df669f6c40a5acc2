"""The one KIM-version lookup: komLeData ("<version>,<mail>") per address, as services and views use it."""

from __future__ import annotations

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
