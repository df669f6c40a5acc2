"""Signing's files in the shared blob store (mailbox.storage), for mailbox's retention (a blob keeper, see
mailbox.extensions): a draft's document, every earlier version's document, what a batch item signs and the
signed result (PAdES PDF or CAdES .p7s). They stay as long as their rows do, whatever happens to a message
that happens to carry the same bytes."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from signing.models import BatchItem, Draft, DraftVersion, Signature


def blobs_still_needed(shas: list[str]) -> set[str]:
    """Of these digests, those a signing row names; one query (a UNION) for the whole chunk."""
    if not shas:
        return set()
    drafts = Draft.objects.filter(sha256__in=shas).values_list("sha256", flat=True).order_by()
    others: list[QuerySet[Any, str]] = [
        DraftVersion.objects.filter(sha256__in=shas).values_list("sha256", flat=True).order_by(),
        Signature.objects.filter(sha256__in=shas).values_list("sha256", flat=True).order_by(),
        Signature.objects.filter(document_sha256__in=shas).values_list("document_sha256", flat=True).order_by(),
        BatchItem.objects.filter(document_sha256__in=shas).values_list("document_sha256", flat=True).order_by(),
    ]
    return set(drafts.union(*others))
