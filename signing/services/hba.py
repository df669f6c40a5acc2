"""The physician's eHBA at the Konnektor, shared by batches and the Komfortsignatur: finding the card, and what a
PIN fault means for the physician."""

from __future__ import annotations

from typing import Any

from kimportal.texts import N_, StoredText
from konnektor import Card, KonnektorClient, KonnektorError, telematik_id_of
from signing.models import SignerCard
from signing.texts import code_stored, konnektor_stored


class BatchStopped(Exception):
    """``text`` is kept untranslated (kimportal.texts): it is stored as the reason and shown later."""

    def __init__(self, code: int | None, text: StoredText) -> None:
        super().__init__(text.stored)
        self.code = code
        self.text = text


def find_signer_card(client: KonnektorClient, ctx: Any, mapping: SignerCard) -> Card:
    """The signer's own eHBA among the inserted ones (by ICCSN, or the Telematik-ID of its QES certificate)."""
    cards = client.get_cards(ctx, card_type="HBA")
    if mapping.iccsn:
        for card in cards:
            if card.iccsn == mapping.iccsn:
                return card
    if mapping.telematik_id:
        for card in cards:
            certificate = client.read_qes_certificate(ctx, card.card_handle)
            if telematik_id_of(certificate) == mapping.telematik_id:
                return card
    raise BatchStopped(
        None,
        N_(
            "Ihr eHBA steckt in keinem Kartenterminal, das dieser Arbeitsplatz erreicht. "
            "Bitte stecken Sie ihn und starten Sie erneut."
        ),
    )


# Faults after which the PIN's state says what to do next (gemILF_PS: query GetPinStatus after PIN faults);
# 4275/4276 are ActivateComfortSignature's "PIN now blocked" and "PIN wrong".
PIN_FAULTS = (4085, 4063, 4043, 4049, 4275, 4276)
WRONG_PIN = (4085, 4276)


def pin_fault_text(client: KonnektorClient, ctx: Any, card_handle: str, exc: KonnektorError) -> StoredText:
    """The fault's text, and for a wrong PIN how many tries are left (or that the PIN is now blocked)."""
    fault = konnektor_stored(exc.code, exc.text)
    if exc.code not in PIN_FAULTS:
        return fault
    try:
        pin = client.get_pin_status(ctx, card_handle, pin_ref="PIN.QES")
    except KonnektorError:
        return fault
    if pin.status == "BLOCKED":
        return code_stored(4063)
    if exc.code in WRONG_PIN and pin.left_tries is not None:
        hint = N_("Die PIN war falsch. Noch %(n)s Versuche, danach ist die PIN gesperrt.") % {"n": pin.left_tries}
        return fault + hint
    return fault
