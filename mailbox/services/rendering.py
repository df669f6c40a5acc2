"""Showing a message's sanitized HTML body, with its inline (cid:) images."""

from __future__ import annotations

import base64
import html
import re

from mailbox.models import Message
from mailbox.parsing import (
    CID_SRC,
    INLINE_IMAGE_TYPES,
    MAX_INLINE_IMAGE_BYTES,
    MAX_INLINE_TOTAL_BYTES,
    cid_key,
    cids_shown,
)
from mailbox.storage import BlobError, blob_get


def message_html_document(message: Message) -> str:
    """The body as a standalone document. cid: references become data: URIs (the only image source
    the iframe's CSP allows); anything else stays unresolvable rather than loading from outside.
    Only the images the body names are read: a sender may add any number it never shows."""
    named = cids_shown(message.html_body)
    images: dict[str, str] = {}
    # In their order while all of them together fit MAX_INLINE_TOTAL_BYTES: the rule ingest marked them inline by
    # (mailbox.parsing._build_attachments), so that an image not shown here is in the attachment list.
    candidates = message.attachments.filter(content_type__in=INLINE_IMAGE_TYPES, size__lte=MAX_INLINE_IMAGE_BYTES)
    budget = MAX_INLINE_TOTAL_BYTES
    for attachment in (
        candidates.exclude(content_id="").order_by("position").only("content_id", "content_type", "sha256", "size")
    ):
        key = cid_key(attachment.content_id)
        if key not in named or key in images or attachment.size > budget:
            continue
        budget -= attachment.size
        try:
            data = blob_get(attachment.sha256)
        except BlobError:
            continue
        images[key] = f"data:{attachment.content_type};base64,{base64.b64encode(data).decode()}"

    def resolve(match: re.Match) -> str:
        uri = images.get(cid_key(html.unescape(match.group(1))))
        return f'src="{uri}"' if uri else match.group(0)

    body = CID_SRC.sub(resolve, message.html_body)
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'
