from __future__ import annotations

import pytest

from tisim.cm.username import UsernameError, build_username, parse_username

ADDR = "erik.mustermann@hrst_domain.kim.telematik".replace("hrst_domain", "hrst-domain")


def test_smtp_username_from_the_ilf_example() -> None:
    u = parse_username("erik.mustermann@hrst-domain.kim.telematik#hrst_domain.kim.telematik:465#1#KIM#7", "smtp")
    assert u.address == "erik.mustermann@hrst-domain.kim.telematik"
    assert u.fachdienst == "hrst_domain.kim.telematik:465"
    assert (u.mandant_id, u.client_system_id, u.workplace_id) == ("1", "KIM", "7")
    assert u.optional == () and u.konnektor_id is None and not u.plain


def test_smtp_username_with_konnektor_id() -> None:
    assert parse_username(f"{ADDR}#fd.kim.telematik:465#1#KIM#7#Konn_1", "smtp").konnektor_id == "Konn_1"


def test_pop3_username_with_placeholder_user_id() -> None:
    u = parse_username(f"{ADDR}#fd.kim.telematik:995#1#KOM_LE#7#*#Konn_1", "pop3")
    assert u.user_id is None
    assert u.konnektor_id == "Konn_1"


def test_pop3_username_with_user_id() -> None:
    u = parse_username(f"{ADDR}#fd.kim.telematik:995#1#KOM_LE#7#hba-user", "pop3")
    assert u.user_id == "hba-user" and u.konnektor_id is None


def test_fachdienst_placeholder_means_dns_sd() -> None:
    assert parse_username(f"{ADDR}#*#1#KIM#7", "smtp").fachdienst is None


def test_address_is_lower_cased() -> None:
    assert parse_username("Erik@FD.kim.telematik#*#1#KIM#7", "pop3").address == "erik@fd.kim.telematik"


@pytest.mark.parametrize(
    ("username", "complaint"),
    [
        (f"{ADDR}#fd.kim.telematik:465#1#KIM", "at least 5"),
        (f"{ADDR}##1#KIM#7", "position 2"),
        (f"{ADDR}#fd.kim.telematik#1#KIM#7", "host:port"),
        (f"{ADDR}#fd.kim.telematik:99999#1#KIM#7", "host:port"),
        (f"{ADDR}#*##KIM#7", "MandantId"),
        (f"{ADDR}#*#*#KIM#7", "MandantId"),
        (f"{ADDR}#*#1##7", "ClientSystemId"),
        (f"{ADDR}#*#1#KIM#*", "WorkplaceId"),
        (f"{ADDR}#*#1#KIM#7#", "position 6"),
        (f"{ADDR}#*#1#KIM#7#a#b#c", "allows 7"),
        ("not-an-address#*#1#KIM#7", "valid mail address"),
        ("a@b#*#1#KIM#7", "valid mail address"),
        ("a..b@fd.kim.telematik#*#1#KIM#7", "valid mail address"),
        (f"{ADDR}#*#1#K IM#7", "whitespace"),
        (ADDR, "no KIM call context"),
        ("", "empty"),
    ],
)
def test_malformed_usernames_say_what_is_wrong(username: str, complaint: str) -> None:
    with pytest.raises(UsernameError, match=complaint):
        parse_username(username, "smtp")


def test_pop3_allows_seven_positions_but_not_eight() -> None:
    parse_username(f"{ADDR}#*#1#KIM#7#u#k", "pop3")
    with pytest.raises(UsernameError, match="allows 7"):
        parse_username(f"{ADDR}#*#1#KIM#7#u#k#x", "pop3")


def test_plain_address_only_when_allowed() -> None:
    u = parse_username(ADDR, "pop3", allow_plain=True)
    assert u.plain and u.address == ADDR and u.mandant_id is None
    with pytest.raises(UsernameError):
        parse_username("no-address", "pop3", allow_plain=True)


def test_build_username_round_trips() -> None:
    u = parse_username(build_username(ADDR), "smtp")
    assert u.address == ADDR and u.fachdienst == "hrst-domain.kim.telematik:465"
