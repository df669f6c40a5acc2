// Small behaviours that must not be inline (CSP forbids inline handlers).
document.addEventListener("change", (ev) => {
  const el = ev.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit")) el.form.requestSubmit();
});

// Mark the navigation entry of the current page (also after a live update replaced the nav).
function markCurrentNav() {
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (a.getAttribute("href") === window.location.pathname) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
}
document.addEventListener("DOMContentLoaded", markCurrentNav);
document.addEventListener("htmx:oobAfterSwap", markCurrentNav);
document.addEventListener("htmx:afterSettle", markCurrentNav);

// Tell the user (and tests) whether live updates are flowing: htmx's ws extension reconnects by itself.
document.addEventListener("htmx:wsOpen", () => { document.body.dataset.live = "open"; });
document.addEventListener("htmx:wsClose", () => { document.body.dataset.live = "closed"; });
