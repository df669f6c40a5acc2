// The send path's pages: drafts that save themselves, typed addresses, drag and drop, live delivery state.
// CSP: no inline handlers, no eval; htmx does the requests, this file only decides when.
(() => {
  "use strict";

  const AUTOSAVE_MS = 3000;
  // Fields that never ride along with an autosave (a half-typed address must not block saving the text).
  const NOT_SAVED = new Set(["to_typed", "cc_typed", "picker_q", "field", "files"]);
  const form = document.querySelector("[data-draft-form]");
  let dirty = false;

  function markDirty() { dirty = true; }

  if (form) {
    form.addEventListener("input", (ev) => {
      if (ev.target && ev.target.name && !NOT_SAVED.has(ev.target.name)) markDirty();
    });
    // While the user types, save every few seconds; a timed save does not count as activity for the idle logout.
    setInterval(() => {
      if (!dirty || !window.htmx) return;
      dirty = false;
      window.htmx.trigger(form, "draft-autosave");
    }, AUTOSAVE_MS);
    // The session ended (idle logout) while a timed save was under way: the server answers JSON, not the status
    // line. Everything up to the last save is kept in "Entwürfe"; say so instead of swapping the answer in.
    form.addEventListener("htmx:beforeSwap", (ev) => {
      const type = ev.detail.xhr.getResponseHeader("Content-Type") || "";
      if (ev.detail.elt !== form || !type.includes("application/json")) return;
      ev.detail.shouldSwap = false;
      const status = document.getElementById("draft-status");
      if (status) {
        status.classList.add("error");
        status.textContent = status.dataset.expiredText || "";
      }
    });
    form.addEventListener("htmx:beforeRequest", (ev) => {
      if (ev.detail.elt === form) dirty = false;
    });
    // A save or send the server refuses outright (403: no longer allowed to send from the mailbox; 404: removed
    // from it; 5xx) is not swapped in (base.html's responseHandling), and without a network there is no answer at
    // all: the status line would go on saying "gespeichert" while nothing is. It says so instead; after a lost
    // connection the next timed save tries again.
    function notSaved(key) {
      const status = document.getElementById("draft-status");
      if (!status) return;
      status.classList.add("error");
      status.textContent = status.dataset[key] || "";
    }
    form.addEventListener("htmx:responseError", (ev) => {
      if (form.contains(ev.detail.elt)) notSaved("refusedText");
    });
    form.addEventListener("htmx:sendError", (ev) => {
      if (!form.contains(ev.detail.elt)) return;
      notSaved("offlineText");
      dirty = true;
    });
    // A closed tab or a navigation away: the last edits go out as a beacon (a plain form post with the CSRF field).
    const flush = () => {
      if (!dirty || !navigator.sendBeacon) return;
      const data = new FormData(form);
      NOT_SAVED.forEach((name) => data.delete(name));
      if (navigator.sendBeacon(form.action, data)) {
        dirty = false;
        // A reload may load the page before the beacon is stored: its first save then carries no version.
        try { sessionStorage.setItem("draft-beacon", form.action); } catch { /* storage off: a conflict is shown */ }
      }
    };
    let afterBeacon = false;
    try {
      afterBeacon = sessionStorage.getItem("draft-beacon") === form.action;
      sessionStorage.removeItem("draft-beacon");
    } catch { /* no storage */ }
    form.addEventListener("htmx:configRequest", (ev) => {
      if (afterBeacon && ev.detail.elt === form) {
        delete ev.detail.parameters.version;
        afterBeacon = false;
      }
    });
    window.addEventListener("pagehide", flush);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") flush(); });

    // Enter in a one-line field must not submit the whole form; in an address box it adds the address.
    form.addEventListener("keydown", (ev) => {
      const el = ev.target;
      if (ev.key !== "Enter" || !(el instanceof HTMLInputElement)) return;
      if (el.hasAttribute("data-typed-address")) {
        ev.preventDefault();
        if (el.value.trim() && window.htmx) window.htmx.trigger(el, "typed-add");
      } else if (el.type === "text" || el.type === "search") {
        ev.preventDefault();
      }
    });
    form.addEventListener("click", (ev) => {
      const button = ev.target.closest && ev.target.closest("[data-typed-add]");
      if (button) {
        const input = document.getElementById(button.dataset.typedAdd);
        if (input && input.value.trim() && window.htmx) window.htmx.trigger(input, "typed-add");
        return;
      }
      // A removed chip changes the recipients (directory.js removes it).
      if (ev.target.closest && ev.target.closest("[data-remove-chip]")) setTimeout(markDirty, 0);
    });
    form.addEventListener("htmx:afterRequest", (ev) => {
      const el = ev.detail.elt;
      if (el instanceof HTMLInputElement && el.hasAttribute("data-typed-address") && ev.detail.xhr.status === 200) {
        el.value = "";
        markDirty();
      }
    });
    // A chip picked from the directory is a change of the recipients.
    // After a pick the hit list closes (the next search opens it again).
    form.addEventListener("htmx:afterSwap", (ev) => {
      const target = ev.detail.target;
      if (!target || !target.classList.contains("vzd-chips")) return;
      markDirty();
      const picker = target.closest("[data-vzd-search]");
      const results = picker && picker.querySelector(".vzd-picker-results");
      if (results) results.replaceChildren();
    });
  }

  // --- Attachments: drag and drop onto the zone (the file input next to it works with the keyboard) ---------
  document.addEventListener("dragover", (ev) => {
    const zone = ev.target.closest && ev.target.closest("[data-drop-zone]");
    if (!zone) return;
    ev.preventDefault();
    zone.classList.add("drag-over");
  });
  document.addEventListener("dragleave", (ev) => {
    const zone = ev.target.closest && ev.target.closest("[data-drop-zone]");
    if (zone) zone.classList.remove("drag-over");
  });
  document.addEventListener("drop", (ev) => {
    const zone = ev.target.closest && ev.target.closest("[data-drop-zone]");
    if (!zone || !ev.dataTransfer || !ev.dataTransfer.files.length) return;
    ev.preventDefault();
    zone.classList.remove("drag-over");
    const input = zone.querySelector("input[type=file]");
    input.files = ev.dataTransfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });

  // An upload the server never answered with the attachment list: larger than the proxy takes in one request
  // (nginx answers 413 before Django sees it: several files that are each allowed), refused (403/404), or no
  // network. Nothing is swapped in for those (base.html's responseHandling): the section says so instead.
  function uploadFailed(ev) {
    const zone = ev.detail.elt && ev.detail.elt.closest && ev.detail.elt.closest("[data-drop-zone]");
    if (!zone) return;
    const section = zone.closest("section") || zone.parentElement;
    let alert = document.getElementById("attachment-error");
    if (!alert) {
      alert = document.createElement("div");
      alert.id = "attachment-error";
      alert.className = "alert alert-danger";
      alert.setAttribute("role", "alert");
      const heading = section.querySelector("h2");
      if (heading) heading.after(alert); else section.prepend(alert);
    }
    const status = ev.detail.xhr ? ev.detail.xhr.status : 0;
    alert.textContent = status === 413 ? zone.dataset.tooLargeText : zone.dataset.failedText;
    // The same files may be chosen again (a change event needs a new selection).
    const input = zone.querySelector("input[type=file]");
    if (input) input.value = "";
  }
  document.addEventListener("htmx:responseError", uploadFailed);
  document.addEventListener("htmx:sendError", uploadFailed);

  // --- Live delivery state: the socket names the sent message that changed; the page re-reads what it shows --
  function refresh(el) {
    if (!window.htmx || !el.id) return;
    window.htmx.ajax("GET", el.dataset.outgoingRefresh, { target: `#${el.id}`, swap: "outerHTML" });
  }
  let lastSeq = "";
  document.addEventListener("htmx:wsAfterMessage", () => {
    const live = document.getElementById("outgoing-live");
    if (!live || !live.dataset.seq || live.dataset.seq === lastSeq) return;
    lastSeq = live.dataset.seq;
    const outgoing = live.dataset.outgoing;
    const mailbox = live.dataset.mailbox;
    document.querySelectorAll(`[data-outgoing-live="${outgoing}"]`).forEach(refresh);
    document.querySelectorAll("[data-outgoing-mailboxes]").forEach((el) => {
      if (el.dataset.outgoingMailboxes.split(/\s+/).includes(mailbox)) refresh(el);
    });
  });
  // The page was rendered before its socket listened: a change in between (the worker hands the message to the CM
  // and the DSN comes back while a slow page still loads) was told to nobody. So once the page's socket first
  // opens, what may still change is read again: a timeline not yet final, a list with rows still under way.
  const FINAL = new Set(["delivered", "failed"]);
  let listening = false;
  document.addEventListener("htmx:wsOpen", (ev) => {
    const url = ev.target instanceof Element ? ev.target.getAttribute("ws-connect") || "" : "";
    if (listening || !url.startsWith("/ws/inbox/")) return;
    listening = true;
    document.querySelectorAll("[data-outgoing-live]").forEach((el) => {
      if (!FINAL.has(el.dataset.state)) refresh(el);
    });
    document.querySelectorAll("[data-outgoing-mailboxes]").forEach((el) => {
      if (el.querySelector(".outgoing-row:not(.state-delivered):not(.state-failed)")) refresh(el);
    });
  });
  // After a dropped connection: whatever changed meanwhile.
  document.body.addEventListener("live-resync", () => {
    document.querySelectorAll("[data-outgoing-live], [data-outgoing-mailboxes]").forEach(refresh);
  });
})();
