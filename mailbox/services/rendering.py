"""Showing a message's sanitized HTML body, with its inline (cid:) images."""

from __future__ import annotations

import base64
import html
import re

from mailbox.models import Message
from mailbox.parsing import INLINE_IMAGE_TYPES, MAX_INLINE_IMAGE_BYTES
from mailbox.storage import BlobError, blob_get

CID_SRC = re.compile(r'src="cid:([^"]+)"', re.IGNORECASE)


def message_html_document(message: Message) -> str:
    """The body as a standalone document. cid: references become data: URIs (the only image source
    the iframe's CSP allows); anything else stays unresolvable rather than loading from outside."""
    images: dict[str, str] = {}
    for attachment in message.attachments.filter(content_type__in=INLINE_IMAGE_TYPES).exclude(content_id=""):
        if attachment.size > MAX_INLINE_IMAGE_BYTES:
            continue
        try:
            data = blob_get(attachment.sha256)
        except BlobError:
            continue
        key = attachment.content_id.strip().strip("<>").lower()
        images[key] = f"data:{attachment.content_type};base64,{base64.b64encode(data).decode()}"

    def resolve(match: re.Match) -> str:
        cid = html.unescape(match.group(1)).strip().strip("<>").lower()
        uri = images.get(cid)
        return f'src="{uri}"' if uri else match.group(0)

    body = CID_SRC.sub(resolve, message.html_body)
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'
