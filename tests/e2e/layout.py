"""Layout measurements for browser tests: what the user actually sees, in CSS pixels."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

TABLET = {"width": 820, "height": 1180}  # a tablet in portrait, as used on ward rounds
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height


def box(locator: Locator) -> Box:
    """The element's border box in page coordinates; it must be rendered."""
    expect(locator).to_be_visible()
    b = locator.bounding_box()
    assert b is not None, f"{locator} has no box"
    scroll = locator.page.evaluate("() => [window.scrollX, window.scrollY]")
    return Box(b["x"] + scroll[0], b["y"] + scroll[1], b["width"], b["height"])


def assert_no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the document scrolls sideways: scrollWidth {width[0]} > innerWidth {width[1]}"


def assert_not_clipped(locator: Locator) -> None:
    """The element shows all of its text (no ellipsis, no overflow cut off)."""
    sizes = locator.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert sizes[0] <= sizes[1], f"{locator} is cut: its text needs {sizes[0]} px, it has {sizes[1]} px"


def line_height(locator: Locator) -> float:
    style = "getComputedStyle(el)"
    return locator.evaluate(f"el => parseFloat({style}.lineHeight) || 1.2 * parseFloat({style}.fontSize)")


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Saved only when E2E_SCREENSHOT_DIR is set, for a person to look at (tests assert on measurements)."""
    folder = os.environ.get("E2E_SCREENSHOT_DIR")
    if folder:
        path = Path(folder) / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=full_page)


# The element's box, or null when a live swap took it out of the page after the locator found it (a detached
# element measures 0 × 0): the locator then finds its replacement.
_CONNECTED_RECT = "el => el.isConnected ? (r => [r.x, r.y, r.width, r.height])(el.getBoundingClientRect()) : null"


def _rect(locator: Locator) -> Box:
    """As ``box``, read in one step: a live swap between two reads (the socket redraws a part) cannot split it, and
    an element replaced by a swap while it was found is measured as its replacement (a sent page reads its timeline
    again as its socket opens)."""
    for _ in range(5):
        expect(locator).to_be_visible()
        r = locator.evaluate(_CONNECTED_RECT)
        if r is not None:
            return Box(*r)
    raise AssertionError(f"{locator} was replaced by a live swap each of five times it was measured")


def assert_touch_target(locator: Locator, minimum: float = 24) -> None:
    """WCAG 2.2's target size (2.5.8, AA): at least 24 × 24 CSS pixels to tap with a finger."""
    b = _rect(locator)
    assert b.width >= minimum and b.height >= minimum, f"{locator} is {b.width}×{b.height} px, less than {minimum} px"


def assert_in_viewport(locator: Locator) -> None:
    """Nothing of the element lies left or right of the window (cut off on a narrow screen)."""
    b = _rect(locator)
    width = locator.page.viewport_size["width"]
    assert b.x >= 0 and b.right <= width + 0.5, f"{locator} spans {b.x}–{b.right} px in a {width} px window"


def tab_to(page: Page, target: Locator, *, limit: int = 80) -> None:
    """Press Tab as a keyboard user does until the target has the focus; it must show a visible focus ring."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError(f"{limit} presses of Tab did not reach {target}")
    outline = target.evaluate(
        "el => { const s = getComputedStyle(el); return [s.outlineStyle, parseFloat(s.outlineWidth) || 0]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2, f"{target} has the focus but shows no focus ring: {outline}"
