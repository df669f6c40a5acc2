// The signing list: select all, the count of selected drafts, and the sign button's state (CSP: no inline code).
function signingSelection() {
  const boxes = Array.from(document.querySelectorAll("input.draft-select"));
  const chosen = boxes.filter((b) => b.checked).length;
  const all = document.getElementById("select-all");
  if (all) {
    all.checked = boxes.length > 0 && chosen === boxes.length;
    all.indeterminate = chosen > 0 && chosen < boxes.length;
  }
  const count = document.getElementById("selection-count");
  const button = document.getElementById("sign-button");
  if (count) {
    const max = parseInt(count.dataset.max || "250", 10);
    count.textContent = count.textContent.replace(/^\d+/, String(chosen));
    if (button && button.form && button.form.id === "sign-form") button.disabled = chosen === 0 || chosen > max;
    // Say why the button is disabled when too many are selected (select all on a long list); only a change of the
    // text is announced, so the text is set once when the limit is passed and emptied when it no longer is.
    const limit = document.getElementById("selection-limit");
    if (limit) {
      const text = chosen > max ? limit.dataset.text : "";
      if (limit.textContent !== text) limit.textContent = text;
    }
  }
}
document.addEventListener("change", (ev) => {
  const el = ev.target;
  if (!(el instanceof HTMLInputElement)) return;
  if (el.id === "select-all") {
    document.querySelectorAll("input.draft-select").forEach((b) => { b.checked = el.checked; });
  }
  if (el.id === "select-all" || el.classList.contains("draft-select")) signingSelection();
});
// Keyboard: Tab reaches each row's checkbox (Space toggles it, natively); "x" toggles the row's checkbox from its
// link too, as in mail clients.
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "x" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const row = ev.target instanceof HTMLElement ? ev.target.closest("tr.draft-row") : null;
  const box = row ? row.querySelector("input.draft-select") : null;
  if (!box) return;
  ev.preventDefault();
  box.checked = !box.checked;
  signingSelection();
});
document.addEventListener("DOMContentLoaded", signingSelection);
document.addEventListener("htmx:afterSettle", signingSelection);

// The list was rendered before the page's socket listened: a draft that arrived or changed in between (the KIS
// delivers a letter, a reviewer returns one while the page still loads) was announced to nobody, and the list would
// stay as loaded. So whenever the queue socket opens (first, and again after a drop), the list is read again and
// compared with the one shown; if it differs, the notice offers the reload (the list is not replaced under the
// physician's selection). A notice the socket already brought says more and stays.
function queueRows(root) {
  return Array.from(root.querySelectorAll("tr.draft-row")).map((row) => row.outerHTML).join("\n");
}
document.addEventListener("htmx:wsOpen", async (ev) => {
  const url = ev.target instanceof Element ? ev.target.getAttribute("ws-connect") || "" : "";
  const shown = document.querySelector("[data-queue-list]");
  const stale = document.getElementById("queue-changed");
  if (!url.startsWith("/ws/signing/queue/") || !shown || !stale) return;
  const href = window.location.href;
  let fresh;
  try {
    const response = await fetch(href, {
      // The page asks, not the user: no activity for the idle logout (mailbox.middleware), or every reconnect
      // would keep an unattended ward PC signed in.
      headers: { "HX-Request": "true", "HX-Target": shown.id, "X-Portal-Background": "1" },
      cache: "no-store",
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    fresh = doc.querySelector("[data-queue-list]");
  } catch {
    return;  // offline again: the next open checks anew
  }
  // A filter changed the list meanwhile (it is current then), or the socket announced something already.
  const notice = document.getElementById("queue-notice");
  if (!fresh || !notice || notice.childElementCount || document.querySelector("[data-queue-list]") !== shown) return;
  if (window.location.href !== href) return;
  if (queueRows(fresh) !== queueRows(shown)) {
    notice.classList.add("notice");
    notice.replaceChildren(stale.content.cloneNode(true));
  }
  notice.dataset.compared = "1";  // the list was compared with the current one (tests wait for it)
});
