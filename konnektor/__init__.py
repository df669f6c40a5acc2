"""The Konnektor's SOAP services through zeep: discovery, cards, PIN, certificates, signature (batch QES and the
Komfortsignatur), verification and the SMC-B's authentication (I/O only, a leaf).

It knows nothing of the portal's models (of Django only its translation, for the error texts): callers pass a
configuration and a call context and get dataclasses back; failures are KonnektorError with the gematik code and
its German text (gettext, so English where the portal speaks English).
"""

from __future__ import annotations

from .batching import batches
from .certificates import telematik_id_of
from .client import KonnektorClient
from .errors import ERROR_TEXTS, KonnektorError, error_text
from .text import short_text
from .types import (
    CADES,
    CERT_REFS,
    INCONCLUSIVE,
    INVALID,
    PADES,
    VALID,
    BatchPlan,
    CallContext,
    Card,
    KonnektorConfig,
    PinResult,
    PinStatus,
    ServiceDirectory,
    SignatureMode,
    SignItem,
    SignResult,
    VerifyResult,
)

__all__ = [
    "CADES",
    "CERT_REFS",
    "ERROR_TEXTS",
    "INCONCLUSIVE",
    "INVALID",
    "PADES",
    "VALID",
    "BatchPlan",
    "CallContext",
    "Card",
    "KonnektorClient",
    "KonnektorConfig",
    "KonnektorError",
    "PinResult",
    "PinStatus",
    "ServiceDirectory",
    "SignItem",
    "SignResult",
    "SignatureMode",
    "VerifyResult",
    "batches",
    "error_text",
    "short_text",
    "telematik_id_of",
]
