// The send path's pages: drafts that save themselves, typed addresses, drag and drop, live delivery state.
// CSP: no inline handlers, no eval; htmx does the requests, this file only decides when.
(() => {
  "use strict";

  const AUTOSAVE_MS = 3000;
  // Fields that never ride along with an autosave (a half-typed address must not block saving the text).
  const NOT_SAVED = new Set(["to_typed", "cc_typed", "picker_q", "field", "files"]);
  const form = document.querySelector("[data-draft-form]");
  let dirty = false;

  // Edits the server has not confirmed are kept in this tab's sessionStorage, per user and draft, until a save
  // answers for them: a session that ended (logged out in another tab, expired) sends the tab to the login page,
  // and after signing in again the draft page offers them back. Never another user's: the key names the user,
  // copies of anyone else are removed when a draft page loads, and the logout page removes them all (portal.js).
  const COPY_PREFIX = "kim-draft-unsaved:";
  const copyKey = form ? `${COPY_PREFIX}${form.dataset.user}:${form.dataset.draft}` : "";
  let copyTimer = 0;
  // Edits made since the server last confirmed a save (what the copy is for; dirty only says a save is due).
  let unconfirmed = false;

  function fields() {
    // What a save stores and the address boxes (a half-typed address is lost with the session too).
    const data = new FormData(form);
    const one = (name) => String(data.get(name) || "");
    return {
      mailbox: one("mailbox"),
      to: data.getAll("to").map(String),
      cc: data.getAll("cc").map(String),
      dienstkennung: one("dienstkennung"),
      subject: one("subject"),
      body: one("body"),
      to_typed: one("to_typed"),
      cc_typed: one("cc_typed"),
    };
  }
  function sameText(a, b) {
    return ["mailbox", "dienstkennung", "subject", "body", "to_typed", "cc_typed"].every((k) => a[k] === b[k])
      && a.to.join("\n") === b.to.join("\n") && a.cc.join("\n") === b.cc.join("\n");
  }
  function storage() {
    try { return window.sessionStorage; } catch { return null; }
  }
  function keepCopy() {
    window.clearTimeout(copyTimer);
    copyTimer = 0;
    const store = storage();
    if (!store || !form) return;
    try {
      // With the version the edits were made on: restored, they are saved against it, so a draft changed since
      // (in another tab, by a colleague) is a conflict to decide, not text silently replaced.
      const version = document.getElementById("draft-version");
      const content = document.getElementById("draft-content");
      store.setItem(copyKey, JSON.stringify({
        at: Date.now(),
        version: version ? version.value : "",
        content: content ? content.value : "",
        fields: fields(),
      }));
    } catch { /* full or off: the server's last save is what remains */ }
  }
  function keepCopySoon() {
    unconfirmed = true;
    if (!copyTimer) copyTimer = window.setTimeout(keepCopy, 400);
  }
  function dropCopy() {
    unconfirmed = false;
    window.clearTimeout(copyTimer);
    copyTimer = 0;
    const store = storage();
    if (store) store.removeItem(copyKey);
  }

  function markDirty() {
    dirty = true;
    keepCopySoon();
  }

  if (form) {
    form.addEventListener("input", (ev) => {
      if (ev.target && ev.target.name && !NOT_SAVED.has(ev.target.name)) markDirty();
      else keepCopySoon();  // an address being typed is kept locally, not saved
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
    // The fields as the last save or send took them: once the server confirms it (the draft-saved event) and
    // nothing was typed since, the local copy goes.
    let sentFields = null;
    document.addEventListener("htmx:configRequest", (ev) => {
      const elt = ev.detail.elt;
      if (elt === form || elt.id === "send-button" || elt.hasAttribute("data-keep-version")) sentFields = fields();
    });
    document.addEventListener("draft-saved", () => {
      const now = fields();
      if (sentFields && sameText(sentFields, now) && !now.to_typed.trim() && !now.cc_typed.trim() && !dirty) dropCopy();
      sentFields = null;
      // A send refused as stale said "nicht gesendet … geändert": once this page's text is saved (kept on purpose,
      // or no longer in conflict), that is over; what remains true is that nothing was sent.
      // After the swap: the button that saved may sit inside the notice.
      window.setTimeout(() => {
        const stale = document.querySelector("#send-problems [data-send-stale]");
        if (!stale) return;
        const done = document.createElement("div");
        done.className = "alert alert-ok";
        done.setAttribute("role", "status");
        done.textContent = stale.dataset.resolvedText || "";
        stale.replaceWith(done);
      }, 0);
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
    // The recipient picker's searches (inside the form) are not the draft's saves: the page-wide notice says theirs.
    const ownRequest = (elt) => form.contains(elt) && !(elt instanceof Element && elt.closest("[data-vzd-search]"));
    form.addEventListener("htmx:responseError", (ev) => {
      if (ownRequest(ev.detail.elt)) notSaved("refusedText");
    });
    form.addEventListener("htmx:sendError", (ev) => {
      if (!ownRequest(ev.detail.elt)) return;
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
    // The page's first autosave after such a beacon: the stored version may be the beacon's, this tab's own. Never a
    // send: sending without a version would send this tab's text over a newer one (a false conflict is safer).
    form.addEventListener("htmx:configRequest", (ev) => {
      if (afterBeacon && ev.detail.elt === form) {
        delete ev.detail.parameters.version;
        delete ev.detail.parameters.content_hash;
        afterBeacon = false;
      }
    });
    window.addEventListener("pagehide", () => {
      if (unconfirmed) keepCopy();
      flush();
    });

    // Signing out on purpose with edits not yet saved (the timed save runs every few seconds, a change's save may
    // still be under way): the logout waits for them. Sent later, at pagehide, they would reach a session already
    // ended, and the copy this tab keeps goes with the logout, as it must (the next person at this tab).
    let saving = 0;
    let lastSaveOk = true;
    form.addEventListener("htmx:beforeRequest", (ev) => {
      if (ev.detail.elt === form) saving += 1;
    });
    form.addEventListener("htmx:afterRequest", (ev) => {
      if (ev.detail.elt !== form) return;
      saving = Math.max(0, saving - 1);
      const xhr = ev.detail.xhr;
      const type = (xhr && xhr.getResponseHeader("Content-Type")) || "";
      lastSaveOk = Boolean(xhr) && xhr.status === 200 && !type.includes("application/json");
    });
    const LOGOUT_WAIT_MS = 15000;
    let leaving = false;
    // Capture phase, before portal.js removes the tab's copies: they stay until the save is answered.
    document.addEventListener("submit", (ev) => {
      const logout = ev.target;
      if (!(logout instanceof HTMLFormElement) || !logout.classList.contains("logout-form")) return;
      if (leaving || (!dirty && !saving) || !window.htmx) return;
      ev.preventDefault();
      ev.stopImmediatePropagation();
      leaving = true;
      const status = document.getElementById("draft-status");
      if (status) {
        status.classList.remove("error");
        status.textContent = form.dataset.logoutSavingText || "";
      }
      let done = false;
      const finish = (ok) => {
        if (done) return;
        done = true;
        form.removeEventListener("htmx:afterRequest", answered);
        window.clearTimeout(timer);
        if (ok || window.confirm(form.dataset.logoutUnsavedText || "")) {
          logout.requestSubmit();
        } else {
          leaving = false;
          dirty = true;  // saved with the next timed save
        }
      };
      // A queued save starts right after the one before it answered: look once it had the chance to.
      const answered = () => window.setTimeout(() => {
        if (saving) return;
        if (dirty) window.htmx.trigger(form, "draft-autosave");  // typed while waiting
        else finish(lastSaveOk);
      }, 0);
      const timer = window.setTimeout(() => finish(false), LOGOUT_WAIT_MS);
      form.addEventListener("htmx:afterRequest", answered);
      if (dirty) window.htmx.trigger(form, "draft-autosave");
    }, true);
    // A tab put in the background stays alive: its edits are saved as any autosave (queued, with the version, the
    // answer read), not as a beacon whose new version the page would never learn (its next save would be refused
    // as a conflict with itself). Shown again, it asks whether the draft changed meanwhile elsewhere.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") {
        if (unconfirmed) keepCopy();
        if (dirty) {
          if (window.htmx) window.htmx.trigger(form, "draft-autosave");
        }
      } else {
        checkDraft();
      }
    });
    function checkDraft() {
      const watch = document.getElementById("draft-watch");
      if (watch && window.htmx) window.htmx.trigger(watch, "draft-check");
    }

    // The draft page after the session ended: a local copy the server never confirmed is offered back, if it
    // differs from what the page shows.
    const offer = document.getElementById("draft-restore");
    const store = storage();
    let copy = null;
    if (store) {
      for (let i = store.length - 1; i >= 0; i -= 1) {
        const key = store.key(i);
        if (key && key.startsWith(COPY_PREFIX) && !key.startsWith(`${COPY_PREFIX}${form.dataset.user}:`)) {
          store.removeItem(key);
        }
      }
      try { copy = JSON.parse(store.getItem(copyKey) || "null"); } catch { copy = null; }
    }
    if (copy && copy.fields && sameText(copy.fields, fields())) {
      // The page shows what the tab kept (the beacon's text arrived): its version is that text's own.
      afterBeacon = false;
      dropCopy();
    } else if (copy && copy.fields && offer) {
      const text = document.getElementById("draft-restore-text");
      const lang = document.documentElement.lang || "de";
      const time = new Date(copy.at).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
      text.textContent = (text.dataset.text || "").replace("{time}", time);
      offer.hidden = false;
      offer.addEventListener("click", (ev) => {
        const restore = ev.target.closest("[data-draft-restore]");
        const discard = ev.target.closest("[data-draft-restore-discard]");
        if (!restore && !discard) return;
        offer.hidden = true;
        if (restore) restoreFields(copy.fields); else dropCopy();
        const subject = document.getElementById("id_subject");
        if (subject) subject.focus();
      });
    }

    function restoreFields(saved) {
      const set = (id, value) => {
        const el = document.getElementById(id);
        if (el && typeof value === "string") el.value = value;
      };
      const mailbox = document.getElementById("id_mailbox");
      if (mailbox && [...mailbox.options].some((o) => o.value === saved.mailbox)) mailbox.value = saved.mailbox;
      const dk = document.getElementById("id_dienstkennung");
      if (dk && [...dk.options].some((o) => o.value === saved.dienstkennung)) dk.value = saved.dienstkennung;
      set("id_subject", saved.subject);
      set("id_body", saved.body);
      set("to-typed", saved.to_typed);
      set("cc-typed", saved.cc_typed);
      restoreChips("to", saved.to || []);
      restoreChips("cc", saved.cc || []);
      // Saved against the version the edits were made on: if the draft changed since, the conflict is shown with
      // both ways out ("Neuere Fassung laden" / "Diese Fassung speichern") instead of replacing the newer text.
      const version = document.getElementById("draft-version");
      if (version && copy.version) version.value = copy.version;
      // A copy kept before pages named their text has no record of it: its version is the guard then.
      const content = document.getElementById("draft-content");
      if (content && copy.version) content.value = copy.content || "";
      afterBeacon = false;
      markDirty();
      window.htmx.trigger(form, "draft-autosave");
    }
    function restoreChips(field, addresses) {
      const list = document.getElementById(`${field}-chips`);
      if (!list) return;
      list.querySelectorAll(".vzd-chip").forEach((chip) => {
        const input = chip.querySelector(`input[name="${field}"]`);
        if (!input || !addresses.includes(input.value)) chip.remove();
      });
      const present = new Set([...list.querySelectorAll(`input[name="${field}"]`)].map((i) => i.value));
      addresses.filter((a) => !present.has(a)).forEach((address) => {
        const chip = document.createElement("li");
        chip.className = "vzd-chip";
        chip.dataset.address = address;
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = field;
        input.value = address;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link-button";
        remove.setAttribute("data-remove-chip", "");
        remove.setAttribute("aria-label", form.dataset.removeLabel || "");
        remove.textContent = "×";
        chip.append(input, `<${address}> `, remove);
        list.append(chip);
      });
    }
    // Discarding the draft discards its copy — once the user confirmed (portal.js asks on the document; this runs
    // after it: compose.js is loaded later).
    const discardForm = document.querySelector(".discard-form");
    document.addEventListener("submit", (ev) => {
      if (discardForm && ev.target === discardForm && !ev.defaultPrevented) dropCopy();
    });

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
    // --- The recipient limit (An and Cc together; the number and the sentences come from the server) -------------
    // At the limit the picker's "Auswählen" and the address boxes' "Hinzufügen" say so and add nothing; removing a
    // chip opens them again. They are marked aria-disabled, not disabled: a keyboard user on a hit (Enter picks) or
    // in the address box keeps the focus where it is and hears why nothing was added. A draft saved with more keeps
    // every chip and says how many must go. Sending checks again (draft_problems): this only spares the surprise.
    const limitBox = () => document.getElementById("recipient-limit");
    const limitMax = Number((limitBox() || { dataset: {} }).dataset.max) || 0;
    // Adds under way (request → its addresses): two quick picks at 99 must not both pass.
    const adding = new Map();
    const normal = (address) => address.trim().replace(/^[<>]+|[<>]+$/g, "").toLowerCase();
    function chosenAddresses() {
      const inputs = form.querySelectorAll('.vzd-chips input[name="to"], .vzd-chips input[name="cc"]');
      return new Set([...inputs].map((i) => normal(i.value)).filter(Boolean));
    }
    const pendingCount = () => [...adding.values()].reduce((sum, n) => sum + n, 0);
    function limitText(box, count) {
      if (count > limitMax) {
        return (box.dataset.overText || "").replace("{count}", String(count)).replace("{over}", String(count - limitMax));
      }
      return count === limitMax ? box.dataset.fullText || "" : "";
    }
    function sayLimit(text, again) {
      const box = limitBox();
      if (!box) return;
      const shown = box.querySelector("p");
      if (!text) {
        if (shown) shown.remove();
        return;
      }
      if (shown && shown.textContent === text && !again) return;
      // A new paragraph each time: the live region announces an addition, also of a sentence said before.
      const p = document.createElement("p");
      p.className = "alert alert-warning";
      p.textContent = text;
      box.replaceChildren(p);
    }
    // The count the sentence was last set for: a refusal said meanwhile stays until the recipients change.
    let saidFor = -1;
    function applyLimit() {
      const box = limitBox();
      if (!box || !limitMax) return;
      const count = chosenAddresses().size;
      if (count !== saidFor) {
        saidFor = count;
        sayLimit(limitText(box, count), false);
      }
      const full = count + pendingCount() >= limitMax;
      form.querySelectorAll(".vzd-pick, [data-typed-add]").forEach((button) => {
        if (full && button.getAttribute("aria-disabled") !== "true") {
          button.dataset.label = button.textContent;
          button.textContent = box.dataset.fullLabel || "";
          button.setAttribute("aria-disabled", "true");
          button.setAttribute("aria-describedby", box.id);
        } else if (!full && button.getAttribute("aria-disabled") === "true") {
          button.textContent = button.dataset.label || "";
          button.removeAttribute("aria-disabled");
          button.removeAttribute("aria-describedby");
        }
      });
    }
    // Whatever changes the chips or brings new hits (a pick, a typed address, ×, a restored copy, the recipients
    // swapped in after "Empfänger entfernen"): applyLimit writes only what differs, so its own changes end here.
    new MutationObserver(applyLimit).observe(form, { childList: true, subtree: true });
    applyLimit();
    document.addEventListener("htmx:beforeRequest", (ev) => {
      const elt = ev.detail.elt;
      if (!limitMax || !(elt instanceof Element) || !form.contains(elt)) return;
      let wanted = 0;
      if (elt.classList.contains("vzd-pick")) {
        wanted = 1;
      } else if (elt instanceof HTMLInputElement && elt.hasAttribute("data-typed-address")) {
        // As the server splits a typed list (forms_compose.SPLIT); addresses already chosen add nobody.
        const present = chosenAddresses();
        wanted = new Set(elt.value.split(/[\s,;]+/).map(normal).filter((a) => a && !present.has(a))).size;
      } else {
        return;
      }
      const box = limitBox();
      const count = chosenAddresses().size;
      const room = limitMax - count - pendingCount();
      if (wanted > 0 && wanted > room) {
        ev.preventDefault();
        const typed = elt.hasAttribute("data-typed-address") && room > 0;
        const text = typed
          ? (box.dataset.typedText || "").replace("{count}", String(count)).replace("{more}", String(wanted))
            .replace("{room}", String(room))
          : limitText(box, Math.max(count, limitMax));
        sayLimit(text, true);
        return;
      }
      adding.set(ev.detail.xhr, wanted);
      applyLimit();
    });
    // The answer is in (the chip swapped in) or none came: the add no longer counts as under way.
    document.addEventListener("htmx:afterRequest", (ev) => {
      if (adding.delete(ev.detail.xhr)) applyLimit();
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
    // This page's draft changed: its own save (the check then finds nothing), another tab's or another person's.
    const watch = document.querySelector(`[data-draft-watch="${outgoing}"]`);
    if (watch && window.htmx) window.htmx.trigger(watch, "draft-check");
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
