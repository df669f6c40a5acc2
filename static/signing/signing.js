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
