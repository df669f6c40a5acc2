"""Accessibility check for browser tests: axe-core (vendored in static/vendor/axe-core/) against WCAG 2.0/2.1 A and AA.

Use it on every page a test visits:  ``assert_accessible(page)``.

axe is injected by the test, never by the product. Playwright's ``add_script_tag(path=...)`` would insert it as an
inline <script>, which the portal's Content-Security-Policy rightly blocks; instead the same file is evaluated through
Playwright (DevTools evaluation is not subject to the page's CSP), so the page keeps its real policy during the test
and inline-script regressions still show up.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE_JS = Path(__file__).resolve().parents[2] / "static" / "vendor" / "axe-core" / "axe.min.js"
WCAG_A_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""


def axe_violations(page: Page) -> list[dict]:
    """Run axe on the page as it is now; returns the WCAG 2.0/2.1 A/AA violations (empty list: none)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    return page.evaluate(_RUN, WCAG_A_AA)


def format_violations(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines.extend(f"    {n['target']}: {n['summary']}" for n in v["nodes"][:5])
    return "\n".join(lines)


def assert_accessible(page: Page, where: str = "") -> None:
    violations = axe_violations(page)
    assert not violations, f"axe found WCAG A/AA violations on {where or page.url}:\n{format_violations(violations)}"
