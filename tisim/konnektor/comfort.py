"""The Komfortsignatur of SignatureService 7.5: ActivateComfortSignature, DeactivateComfortSignature,
GetSignatureMode (gemSpec_Kon 4.1.8.1.5, gemILF_PS 4.4.2).

Activation asks for PIN.QES at the card terminal like any PIN entry ("Komfortsignatur aktivieren HBA") and binds
the session to (card, ClientSystemId, UserId); SignDocument calls of that UserId then sign without a PIN (see
operations._comfort_for) until the count or the time is used up, the session is deactivated or the card pulled.
Only with client authentication (modes "basic" and "cert"): in "plain" the function is off (4263).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lxml import etree

from tisim.konnektor.operations import card_from, check_context, check_reachable
from tisim.konnektor.soap import CONN, SIG_V75, KonnektorFault, Trace, element, parse_context, q, status

if TYPE_CHECKING:
    from tisim.konnektor.simulator import KonnektorSimulator

# gemILF_PS A_19259: a new UUID per activation (RFC 4122, 36 characters 8-4-4-4-12).
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ACTIVATION_PROMPT = ["Komfortsignatur aktivieren HBA", "PIN.QES:"]


def duration(seconds: float) -> str:
    """An xsd:duration: whole hours as PT24H, else seconds (PT90S, PT0.5S)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"PT{int(seconds // 3600)}H"
    if seconds == int(seconds):
        return f"PT{int(seconds)}S"
    return f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S"


def activate_comfort_signature(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    card = card_from(sim, op)
    check_context(sim, ctx, card=card, user=True)
    if not sim.comfort_enabled:
        why = "nur mit Verbindungsart Login oder Zertifikat" if sim.mode == "plain" else "SAK_COMFORT_SIGNATURE"
        raise KonnektorFault(4263, why)
    if card.card_type != "HBA":
        raise KonnektorFault(4274, card.card_type)
    if not ctx.user_id or not UUID.fullmatch(ctx.user_id):
        raise KonnektorFault(4272, "UserId muss eine UUID sein")
    if sim.comfort_user_id_used(ctx.user_id):
        raise KonnektorFault(4270, ctx.user_id)
    if sim.comfort_session(card) is not None or sim.take_fault("hba-other-user") is not None:
        # The card's security state is raised for another activation (also the same user's earlier one).
        raise KonnektorFault(4018, "Komfortsignatur bereits aktiv")
    terminal = check_reachable(sim, ctx, card)
    pin_state = sim.effective_pin_state(card)
    if pin_state == "TRANSPORT_PIN":
        raise KonnektorFault(4065)
    if pin_state == "BLOCKED":
        raise KonnektorFault(4063)
    with sim.reserve(card, f"ActivateComfortSignature:{ctx.user_id}"):
        result = sim.ask_pin(card, terminal, list(ACTIVATION_PROMPT), job=None)
        if result == "ok":
            sim.open_comfort(card, ctx)
    if result == "timeout":
        raise KonnektorFault(4043)
    if result in ("cancel", "stopped"):
        raise KonnektorFault(4049)
    if result == "blocked":
        raise KonnektorFault(4063)
    if result == "removed":
        raise KonnektorFault(4008)
    if result == "wrong":
        if card.pin_state == "BLOCKED":
            raise KonnektorFault(4275)
        raise KonnektorFault(4276, f"verbleibende Versuche: {card.left_tries}")
    response = element(None, SIG_V75, "ActivateComfortSignatureResponse")
    status(response)
    element(response, SIG_V75, "SignatureMode", "COMFORT")
    return response


def deactivate_comfort_signature(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    handles = [(el.text or "").strip() for el in op.findall(q(CONN, "CardHandle"))]
    if not handles:
        raise KonnektorFault(4000, "CardHandle fehlt")
    warning: Trace | None = None
    for handle in handles:
        card = sim.card_by_handle(handle)
        if card is None:
            warning = warning or Trace(4265, handle)
        elif not sim.end_comfort(card, 4278, "Komfortsignatur deaktiviert"):
            warning = warning or Trace(4266, handle)
    response = element(None, SIG_V75, "DeactivateComfortSignatureResponse")
    status(response, warning)
    return response


def get_signature_mode(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    ctx = parse_context(op)
    card = card_from(sim, op)
    check_context(sim, ctx, card=card)
    if card.card_type != "HBA":
        raise KonnektorFault(4274, card.card_type)
    response = element(None, SIG_V75, "GetSignatureModeResponse")
    status(response)
    element(response, SIG_V75, "ComfortSignatureStatus", "ENABLED" if sim.comfort_enabled else "DISABLED")
    element(response, SIG_V75, "ComfortSignatureMax", str(sim.comfort_max))
    element(response, SIG_V75, "ComfortSignatureTimer", duration(sim.comfort_timer))
    session = sim.comfort_session(card)
    if session is not None and (ctx.user_id, ctx.client_system_id) == (session.user_id, session.client_system_id):
        info = element(response, SIG_V75, "SessionInfo")
        element(info, SIG_V75, "SignatureMode", "COMFORT")
        element(info, SIG_V75, "CountRemaining", str(max(0, session.remaining)))
        element(info, SIG_V75, "TimeRemaining", duration(round(session.time_left(), 3)))
    return response


HANDLERS = {
    q(SIG_V75, "ActivateComfortSignature"): activate_comfort_signature,
    q(SIG_V75, "DeactivateComfortSignature"): deactivate_comfort_signature,
    q(SIG_V75, "GetSignatureMode"): get_signature_mode,
}
