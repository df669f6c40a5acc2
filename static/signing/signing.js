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
// Space toggles a row's checkbox when the row has focus ("x" too, as in mail clients); keyboard users need no mouse.
document.addEventListener("keydown", (ev) => {
  const row = ev.target instanceof HTMLElement ? ev.target.closest("tr.draft-row") : null;
  if (!row || ev.target instanceof HTMLInputElement || ev.target instanceof HTMLAnchorElement) return;
  if (ev.key === "x" || ev.key === " ") {
    const box = row.querySelector("input.draft-select");
    if (box) { ev.preventDefault(); box.checked = !box.checked; signingSelection(); }
  }
});
document.addEventListener("DOMContentLoaded", signingSelection);
document.addEventListener("htmx:afterSettle", signingSelection);
