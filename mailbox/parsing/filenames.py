"""Attachment file names that are safe to display and to offer for download.

Sender-supplied names can carry path separators, control and bidi characters, Windows device
names or hundreds of bytes; ``sanitize_filename`` neutralises all of that, and
``extension_for`` names a part that came without a usable name.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

_PREFERRED_EXT = {
    "application/pdf": ".pdf",
    "application/octet-stream": ".bin",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "application/pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/zip": ".zip",
}
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)
_MAX_NAME = 255


def extension_for(content_type: str) -> str:
    ext = _PREFERRED_EXT.get(content_type) or mimetypes.guess_extension(content_type, strict=False)
    return ext or ".bin"


def sanitize_filename(name: str) -> str:
    """Display/download-safe file name; "" when nothing usable is left."""
    name = unicodedata.normalize("NFC", name)
    # Cc: control characters; Cf: invisible format characters such as U+202E, which can
    # make "rechnung\u202efdp.exe" display as "rechnungexe.pdf".
    name = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in name)
    name = name.replace("/", "_").replace("\\", "_")
    name = " ".join(name.split())
    # No hidden files and no ".." names; trailing dots/spaces are stripped by Windows anyway.
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        return ""
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    if len(name) > _MAX_NAME or len(name.encode("utf-8")) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        suffix = "." + ext if dot and 0 < len(ext) <= 16 else ""
        stem = stem if suffix else name
        # Cut by characters until it also fits common 255-byte file-system limits.
        budget = _MAX_NAME - len(suffix.encode("utf-8"))
        while len(stem.encode("utf-8")) > budget:
            stem = stem[: max(0, min(len(stem) - 1, budget))]
        name = stem.rstrip(". ") + suffix
    return name
