"""The connection's and connector.sds's own texts (konnektor.transport, konnektor.discovery) are in the language the
portal speaks when they are raised; the technical cause for the log stays the same in every language."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import requests
from django.utils import translation
from django.utils.translation import gettext

import konnektor
from konnektor import CallContext, KonnektorClient, KonnektorConfig, KonnektorError
from konnektor.discovery import parse_sds
from konnektor.transport import KonnektorTransport
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, MANDANT, WORKPLACE
from tests.konnektor.support import CraftedKonnektor

SIM_CTX = CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE, "user-aerztin")


def refused(config: KonnektorConfig, language: str) -> KonnektorError:
    with translation.override(language), pytest.raises(KonnektorError) as caught:
        KonnektorClient(config)
    return caught.value


@pytest.mark.parametrize(
    ("options", "english", "german"),
    [
        (
            {"base_url": "http://k:80", "mode": "tls"},
            "Unknown connection type to the Konnektor: 'tls' (allowed: plain, basic, cert).",
            "Unbekannte Verbindungsart zum Konnektor: 'tls' (erlaubt: plain, basic, cert).",
        ),
        (
            {"base_url": "ftp://k"},
            "The Konnektor's address is invalid: 'ftp://k'.",
            "Die Adresse des Konnektors ist ungültig: 'ftp://k'.",
        ),
        (
            {"base_url": "http://k:80", "mode": "basic", "username": "u", "password": "p"},
            "Logging in to the Konnektor (user or client certificate) requires an HTTPS address.",
            "Für die Anmeldung am Konnektor (Benutzer oder Client-Zertifikat) ist eine HTTPS-Adresse nötig.",
        ),
        (
            {"base_url": "https://k:443", "mode": "basic", "username": "u"},
            "The user name or password for logging in to the Konnektor is missing.",
            "Für die Anmeldung am Konnektor fehlen Benutzername oder Passwort.",
        ),
        (
            {"base_url": "https://k:443", "mode": "cert"},
            "The client certificate or key for logging in to the Konnektor is missing.",
            "Für die Anmeldung am Konnektor fehlen Client-Zertifikat oder Schlüssel.",
        ),
        (
            {"base_url": "https://k:443", "ca_pem": b"not a pem"},
            "The CA certificate for the Konnektor is invalid (PEM expected).",
            "Das CA-Zertifikat für den Konnektor ist ungültig (PEM erwartet).",
        ),
        (
            {"base_url": "https://k:443", "mode": "cert", "client_cert_pem": b"x", "client_key_pem": b"y"},
            "The client certificate or key for the Konnektor is invalid, or they do not match.",
            "Client-Zertifikat oder Schlüssel für den Konnektor sind ungültig oder passen nicht zusammen.",
        ),
    ],
)
def test_unusable_settings_are_refused_in_the_portals_language(
    options: dict[str, object], english: str, german: str
) -> None:
    config = KonnektorConfig(**options)  # type: ignore[arg-type]
    in_english = refused(config, "en")
    in_german = refused(config, "de")
    assert (in_english.text, in_german.text) == (english, german)
    assert in_english.kind == in_german.kind == "config"
    # The log side does not depend on the language.
    assert in_english.fault == in_german.fault


def test_a_refused_login_at_the_simulated_konnektor(konnektor_sim_factory, make_client) -> None:
    sim = konnektor_sim_factory(mode="basic", basic_user="portal", basic_password="richtig-geheim")
    wrong, _ = make_client(sim.base_url, mode="basic", username="portal", password="falsch", ca_pem=sim.server_ca_pem)
    with translation.override("en"), pytest.raises(KonnektorError) as english:
        wrong.get_cards(SIM_CTX)
    with translation.override("de"), pytest.raises(KonnektorError) as german:
        wrong.get_cards(SIM_CTX)
    assert english.value.kind == "auth"
    assert english.value.text == "Login to the Konnektor failed: the user name or password was rejected."
    assert german.value.text == "Anmeldung am Konnektor fehlgeschlagen: Benutzername oder Passwort wurden abgelehnt."
    assert english.value.fault == german.value.fault == "HTTP 401"
    # An error keeps the text of the language it was raised in.
    with translation.override("de"):
        assert english.value.text.startswith("Login to the Konnektor failed")


@pytest.mark.parametrize(
    ("status_code", "body", "english", "german"),
    [
        (
            403,
            b"<html>forbidden</html>",
            "The Konnektor denies access (check the credentials or the client certificate).",
            "Der Konnektor verweigert den Zugriff (Zugangsdaten oder Client-Zertifikat prüfen).",
        ),
        (
            502,
            b"",
            "The Konnektor answered with HTTP status 502 instead of a SOAP response.",
            "Der Konnektor hat mit HTTP-Status 502 statt einer SOAP-Antwort geantwortet.",
        ),
    ],
)
def test_http_errors_in_the_portals_language(
    crafted: CraftedKonnektor, make_client, ctx, status_code, body, english, german
) -> None:
    crafted.answer_always(status_code, body)
    client, _ = make_client(crafted.base_url)
    with translation.override("en"), pytest.raises(KonnektorError) as in_english:
        client.get_job_number(ctx)
    with translation.override("de"), pytest.raises(KonnektorError) as in_german:
        client.get_job_number(ctx)
    assert (in_english.value.text, in_german.value.text) == (english, german)
    assert in_english.value.fault == in_german.value.fault == f"HTTP {status_code}"


@pytest.mark.parametrize(
    ("content", "english", "german"),
    [
        (
            b"<not-xml",
            "The Konnektor's service description (connector.sds) is not valid XML.",
            "Die Dienstbeschreibung des Konnektors (connector.sds) ist kein gültiges XML.",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
            "The Konnektor's service description (connector.sds) contains a DTD and is refused.",
            "Die Dienstbeschreibung des Konnektors (connector.sds) enthält eine DTD und wird abgelehnt.",
        ),
        (
            b"<other/>",
            "The Konnektor's service description (connector.sds) has an unknown format.",
            "Die Dienstbeschreibung des Konnektors (connector.sds) hat ein unbekanntes Format.",
        ),
    ],
)
def test_an_unacceptable_connector_sds_in_the_portals_language(
    crafted: CraftedKonnektor, make_client, content, english, german
) -> None:
    crafted.sds = content
    client, _ = make_client(crafted.base_url)
    with translation.override("en"), pytest.raises(KonnektorError) as in_english:
        client.discover()
    with translation.override("de"), pytest.raises(KonnektorError) as in_german:
        parse_sds(content, tls=False)
    assert in_english.value.kind == "protocol"
    assert (in_english.value.text, in_german.value.text) == (english, german)
    assert in_english.value.fault == in_german.value.fault


def test_a_refused_fetch_in_the_portals_language() -> None:
    session = requests.Session()
    try:
        transport = KonnektorTransport(session, timeout=1, sign_timeout=1)
        with translation.override("en"), pytest.raises(KonnektorError) as english:
            transport.load("http://10.0.0.5/more.xsd")
        with translation.override("de"), pytest.raises(KonnektorError) as german:
            transport.load("http://10.0.0.5/more.xsd")
    finally:
        session.close()
    assert english.value.text == (
        "Unexpected attempt to load a further file: the portal does not load files from the Konnektor."
    )
    assert german.value.text == "Unerwarteter Nachladeversuch: das Portal lädt keine Dateien vom Konnektor nach."
    assert english.value.fault == german.value.fault == "http://10.0.0.5/more.xsd"


# ---- the catalogue --------------------------------------------------------------------------------------------

PACKAGE = Path(konnektor.__file__).parent
GETTEXT_NAMES = {"_", "gettext", "gettext_lazy"}


def calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)]


def test_no_konnektor_error_text_is_a_plain_german_literal() -> None:
    """A KonnektorError's text (second argument) goes through gettext, never a string or f-string literal."""
    literal = []
    for path in sorted(PACKAGE.glob("*.py")):
        for call in calls(path):
            if isinstance(call.func, ast.Name) and call.func.id == "KonnektorError" and len(call.args) >= 2:
                if isinstance(call.args[1], (ast.Constant, ast.JoinedStr)):
                    literal.append(f"{path.name}:{call.lineno}")
    assert literal == []


def test_every_konnektor_text_has_an_english_translation() -> None:
    msgids = {
        (path.name, call.args[0].value)
        for path in sorted(PACKAGE.glob("*.py"))
        for call in calls(path)
        if isinstance(call.func, ast.Name)
        and call.func.id in GETTEXT_NAMES
        and call.args
        and isinstance(call.args[0], ast.Constant)
    }
    assert {name for name, _ in msgids} >= {"transport.py", "discovery.py", "client.py", "errors.py"}
    with translation.override("en"):
        untranslated = sorted((name, msgid) for name, msgid in msgids if gettext(msgid) == msgid)
    assert untranslated == []
