// Directory search and recipient picker: keyboard navigation and chip removal (CSP: no inline handlers).
(() => {
  "use strict";

  const hitsOf = (box) => Array.from(box.querySelectorAll("[data-vzd-results] [data-hit]"));

  function focusHit(items, index) {
    items.forEach((el, i) => el.classList.toggle("is-current", i === index));
    if (items[index]) {
      items[index].focus();
      items[index].scrollIntoView({ block: "nearest" });
    }
  }

  document.addEventListener("keydown", (ev) => {
    const box = ev.target.closest && ev.target.closest("[data-vzd-search]");
    if (!box) return;
    const items = hitsOf(box);
    const input = box.querySelector("[data-vzd-input]");
    const current = ev.target.closest("[data-hit]");
    const index = current ? items.indexOf(current) : -1;
    if (ev.key === "ArrowDown" && items.length) {
      ev.preventDefault();
      focusHit(items, Math.min(index + 1, items.length - 1));
    } else if (ev.key === "ArrowUp" && items.length && index >= 0) {
      ev.preventDefault();
      if (index === 0) input.focus();
      else focusHit(items, index - 1);
    } else if (ev.key === "Enter" && current && ev.target === current) {
      // Enter on a result runs its primary action (details on the search page, "pick" in the picker).
      ev.preventDefault();
      const primary = current.querySelector("[data-primary]");
      if (primary) primary.click();
    } else if (ev.key === "Escape" && current) {
      ev.preventDefault();
      input.focus();
    }
  });

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest && ev.target.closest("[data-remove-chip]");
    if (!button) return;
    const chip = button.closest(".vzd-chip");
    const picker = button.closest("[data-vzd-search]");
    if (chip) chip.remove();
    if (picker) picker.querySelector("[data-vzd-input]").focus();
  });

  // "Weitere Treffer anzeigen" replaced itself (and took the focus with it): continue at the first new hit.
  document.addEventListener("htmx:afterSettle", () => {
    const first = document.querySelector("[data-vzd-results] [data-first-new]");
    if (!first) return;
    first.removeAttribute("data-first-new");
    const box = first.closest("[data-vzd-search]");
    const items = hitsOf(box);
    focusHit(items, items.indexOf(first));
  });

  // After a pick, go back to the search box for the next recipient.
  document.addEventListener("htmx:afterSwap", (ev) => {
    const target = ev.detail.target;
    if (target && target.classList && target.classList.contains("vzd-chips")) {
      const picker = target.closest("[data-vzd-search]");
      const input = picker && picker.querySelector("[data-vzd-input]");
      if (input) {
        input.value = "";
        input.focus();
      }
    }
  });
})();
