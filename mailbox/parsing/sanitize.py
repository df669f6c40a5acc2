"""The HTML sanitizer: untrusted mail HTML in, HTML safe to show in the portal out.

A security boundary.  The allow-list (tags, attributes, CSS properties, URL schemes) is kept
deliberately small: no script, no forms, no frames, no remote loads (tracking pixels, CSS
``url()``), no relative URLs that would resolve against the portal's origin.  The UI adds a
sandboxed iframe and a CSP on top; this module must hold on its own.  Any failure returns "".
"""

from __future__ import annotations

import re

import nh3

_ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {"tfoot", "font", "center"}
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "form",
    "noscript",
    "template",
    "title",
    "svg",
    "math",
    "textarea",
    "select",
    "button",
    "head",
    "meta",
    "link",
    "base",
}
_ALLOWED_TAGS -= _DROP_WITH_CONTENT


def _attributes() -> dict[str, set[str]]:
    attrs = {tag: set(values) for tag, values in nh3.ALLOWED_ATTRIBUTES.items()}
    attrs["*"] = {"style", "title", "dir", "lang", "align"}
    attrs.setdefault("img", set()).update({"src", "alt", "width", "height", "title", "border"})
    attrs.setdefault("a", set()).update({"href", "title"})
    for tag in ("table", "td", "th", "tr"):
        attrs.setdefault(tag, set()).update({"width", "height", "valign", "bgcolor", "border"})
    attrs["table"].update({"cellpadding", "cellspacing"})
    attrs["font"] = {"color", "size", "face"}
    return attrs


_ALLOWED_ATTRIBUTES = _attributes()
# Style properties without URL-bearing values (no background-image, list-style-image,
# border-image, content): CSS url() would load remote resources.
_STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "width",
    "height",
    "max-width",
    "min-width",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "display",
    "list-style-type",
}
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_DATA_IMAGE_RE = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp|bmp);base64,[a-z0-9+/=\s]*$", re.IGNORECASE)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    compact = re.sub(r"[\x00-\x20]", "", value).lower()
    if attr == "src":
        # No remote loads (tracking pixels, IP leaks): only embedded parts and inline data.
        if compact.startswith("cid:") or _DATA_IMAGE_RE.match(value.strip()):
            return value
        return None
    if attr == "href":
        return value if compact.startswith(_LINK_SCHEMES) else None
    if attr == "style" and ("url(" in compact or "expression(" in compact or "\\" in compact or "@import" in compact):
        # Defence in depth on top of filter_style_properties: escapes and url() can smuggle loads.
        return None
    return value


_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ALLOWED_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    strip_comments=True,
    link_rel="noopener noreferrer",
    url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
    filter_style_properties=_STYLE_PROPERTIES,
    # Relative URLs would resolve against the portal origin inside the iframe.
    url_relative="deny",
)


# html5ever looks through the whole stack of open elements for each block-level start tag, so the
# sanitizer's time grows with the square of the nesting depth: 100,000 nested <div> (1.1 MB) took
# three minutes, an 8 MB body would outlast the fetch task's time limit on every try.  Browsers stop
# at 512 levels; real mail nests a few dozen.
MAX_DEPTH = 512
# Elements that never stay open (void) or that the parser closes by itself at the next sibling.
_NOT_NESTING = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
    "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup", "rp",
    "rt", "colgroup", "caption", "html", "head", "body",
}  # fmt: skip
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")


# Foreign content: inside these (and for these themselves) "/>" closes an element; elsewhere the parser ignores it.
_FOREIGN = {"svg", "math"}


def html_too_deep(html: str) -> bool:
    """Whether *html* nests elements deeper than MAX_DEPTH (a linear estimate, before any parsing).

    As the parser does: an end tag closes its element and every element opened inside it, and one that matches
    no open element closes nothing ("<div></x>" nests); "<div/>" stays open outside SVG and MathML."""
    stack: list[str] = []
    open_count: dict[str, int] = {}
    foreign = 0
    # No tag ends after the last ">": looking for one's end from every "<" there would scan to the end each time.
    for match in _TAG_RE.finditer(html, 0, html.rfind(">") + 1):
        closing, tag, self_closing = match.groups()
        name = tag.lower()
        if name in _NOT_NESTING or (self_closing and (foreign or name in _FOREIGN)):
            continue
        if closing:
            if open_count.get(name):
                while True:  # each element is pushed and popped once: linear in all
                    top = stack.pop()
                    open_count[top] -= 1
                    foreign -= top in _FOREIGN
                    if top == name:
                        break
            continue
        stack.append(name)
        open_count[name] = open_count.get(name, 0) + 1
        foreign += name in _FOREIGN
        if len(stack) > MAX_DEPTH:
            return True
    return False


def sanitize_html(html: str, *, depth_checked: bool = False) -> str:
    """Sanitize untrusted mail HTML for display (the UI adds a sandboxed iframe on top).

    "" for HTML nested deeper than MAX_DEPTH (see html_too_deep); `depth_checked`: the caller has found it is not.
    """
    if not html or (not depth_checked and html_too_deep(html)):
        return ""
    try:
        return _CLEANER.clean(html)
    except Exception:  # never return unsanitized HTML
        return ""
