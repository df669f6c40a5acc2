"""The signing app's models, one module per subject; import them from here."""

from __future__ import annotations

from signing.models.batches import BatchItem, SignatureBatch
from signing.models.cards import SignerCard, Workplace
from signing.models.comfort import ComfortActivation, ComfortUse
from signing.models.drafts import Draft, DraftQuerySet, Signature
from signing.models.kisapi import KisCallback, KisClient, KisDraft, KisToken
from signing.models.received import ReceivedSignature
from signing.models.review import DraftVersion, ReviewRule, ReviewStep

__all__ = [
    "BatchItem",
    "ComfortActivation",
    "ComfortUse",
    "Draft",
    "DraftQuerySet",
    "DraftVersion",
    "KisCallback",
    "KisClient",
    "KisDraft",
    "KisToken",
    "ReceivedSignature",
    "ReviewRule",
    "ReviewStep",
    "Signature",
    "SignatureBatch",
    "SignerCard",
    "Workplace",
]
