// Small behaviours that must not be inline (CSP forbids inline handlers).
document.addEventListener("change", (ev) => {
  const el = ev.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit")) el.form.requestSubmit();
});

// What cannot be undone (discarding or deleting a draft, switching a mailbox off) asks first: a slip of the finger
// on a ward tablet loses nothing.
document.addEventListener("submit", (ev) => {
  const question = ev.target instanceof HTMLFormElement && ev.target.dataset.confirm;
  if (question && !window.confirm(question)) ev.preventDefault();
});

// A form that creates something is sent once per page: the second click of a double click, while the first answer
// is still on its way, would send it again and show that answer instead ("gibt es schon", a stale-save refusal).
// Registered after the question above, so a form the user declined to send can be sent later.
document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-submit-once") || ev.defaultPrevented) return;
  if (form.dataset.submitted === "1") ev.preventDefault();
  else form.dataset.submitted = "1";
});
// A page the browser restores from its cache (the back button) can send its forms again.
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) document.querySelectorAll("form[data-submitted]").forEach((form) => form.removeAttribute("data-submitted"));
});
// Unsaved draft edits a tab keeps (compose.js) end with the session the user ends: when the logout form is sent
// and again when the page after the logout loads (the form may have been sent from another page of the tab). A
// page of someone else signed in at this tab (the session had ended without a logout) removes them too: they are
// never shown to another user, and not left in the tab for them either.
function dropDraftCopies(keepUser) {
  try {
    const store = window.sessionStorage;
    for (let i = store.length - 1; i >= 0; i -= 1) {
      const key = store.key(i);
      if (key && key.startsWith("kim-draft-unsaved:") && !(keepUser && key.startsWith(`kim-draft-unsaved:${keepUser}:`))) {
        store.removeItem(key);
      }
    }
  } catch { /* no storage: nothing kept */ }
}
document.addEventListener("submit", (ev) => {
  if (ev.target instanceof HTMLFormElement && ev.target.classList.contains("logout-form")) dropDraftCopies("");
});
// Deferred: the page is parsed. The login page itself keeps them: the same user may be signing in again.
if (document.querySelector("[data-logged-out]")) dropDraftCopies("");
else if (document.body.dataset.user) dropDraftCopies(document.body.dataset.user);

// Messages of the page load (saved, refused …) are announced by moving them into the live regions that were in the
// page, empty, from the start: a region that arrives already filled is not read by every screen reader. The pause
// lets the browser tell assistive technology about the empty regions before they change.
const FLASH_DELAY_MS = 250;
function announceFlash() {
  const pending = document.getElementById("flash-pending");
  const status = document.getElementById("flash-status");
  const alert = document.getElementById("flash-alert");
  if (!pending || !status || !alert) return;
  for (const message of Array.from(pending.children)) {
    (message.dataset.level === "error" ? alert : status).append(message);
  }
  pending.remove();
}
document.addEventListener("DOMContentLoaded", () => setTimeout(announceFlash, FLASH_DELAY_MS));

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
// After a drop (network, server restart, or the server closing a socket that fell behind) the page
// resyncs once the connection is back: the list is reloaded and each socket sends the current state.
let liveWasClosed = false;
document.addEventListener("htmx:wsOpen", () => {
  if (document.body.dataset.live === "ended") return;
  document.body.dataset.live = "open";
  if (!liveWasClosed) return;
  liveWasClosed = false;
  // Wait a tick so that every reconnecting socket of the page is open before it is asked, and so that a socket of
  // an ended session (opened, then closed with 4401 at once) reloads nothing: the list would become the login page.
  setTimeout(resyncPage, 200);
});
function resyncPage() {
  if (document.body.dataset.live === "ended") return;
  const list = document.getElementById("message-list");
  if (list && window.htmx) {
    window.htmx.ajax("GET", window.location.href, { target: "#message-list", swap: "outerHTML" });
  }
  document.body.dispatchEvent(new Event("live-resync"));
}
// A page restored from the browser's back-forward cache shows what it showed when the user left it, however long
// ago: it is read again as after a dropped connection (the socket's replay of a list's rows reaches back only
// about 50 s, and a socket that stayed open heard nothing while the page was away).
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) resyncPage();
});
document.addEventListener("htmx:wsClose", (ev) => {
  if (document.body.dataset.live === "ended") return;
  // 4401: the session ended (logged out in another tab or elsewhere, expired). The server accepts the socket and
  // closes it with this code so that htmx does not reconnect (it would on the 1006 of a refused handshake); the
  // page says so and offers to sign in again, back to this page.
  if (ev.detail && ev.detail.event && ev.detail.event.code === 4401) {
    document.body.dataset.live = "ended";
    showSessionEnded();
    return;
  }
  // 4403/4404: what this socket is about is no longer the user's to see (removed from the mailbox, the letter
  // deleted): htmx does not reconnect; the page says why it stopped following.
  if (ev.detail && ev.detail.event && [4403, 4404].includes(ev.detail.event.code)) {
    showAccessEnded();
    return;
  }
  document.body.dataset.live = "closed";
  liveWasClosed = true;
});
function showAccessEnded() {
  const text = document.getElementById("session-ended-text");
  const home = document.getElementById("session-ended-home");
  const close = document.getElementById("session-ended-close");
  if (!text || !home) return;
  home.hidden = false;
  if (close) close.hidden = false;
  text.textContent = text.dataset.accessText;
}
// The access notice can be put away (the session goes on, and it covers the top of the page); the focus goes to
// the page's content, not to the top of the document.
document.addEventListener("click", (ev) => {
  if (!ev.target.closest || !ev.target.closest("#session-ended-close")) return;
  if (document.body.dataset.live === "ended") return;
  document.getElementById("session-ended-text").textContent = "";
  for (const id of ["session-ended-home", "session-ended-close"]) document.getElementById(id).hidden = true;
  const main = document.getElementById("main");
  if (main) main.focus();
});
function showSessionEnded() {
  const text = document.getElementById("session-ended-text");
  const login = document.getElementById("session-ended-login");
  if (!text || !login) return;
  const next = new URLSearchParams({ next: window.location.pathname + window.location.search });
  login.href = `${document.getElementById("session-ended").dataset.loginUrl}?${next}`;
  login.hidden = false;
  // The session is gone: nothing on the page works any more, so the notice stays (as does the way back to the start).
  const close = document.getElementById("session-ended-close");
  if (close) close.hidden = true;
  // Filling the always-present alert region is what screen readers announce.
  text.textContent = text.dataset.text;
}

// --- A request of the page that failed says so --------------------------------------------------
// htmx swaps nothing in for a refused or failed answer (base.html's responseHandling), and without a network there is
// no answer at all: the button the user pressed would simply do nothing. The page says what happened and what to do
// in #request-error, whose alert region is in the page, empty, from the start (filling it is what screen readers
// announce). One message at a time: the same failure again changes nothing, another replaces it. It goes when the
// same request succeeds (not any other: the page's own timed requests may get through while this one cannot) or when
// the user closes it. A signed-out tab is no error: the server answers its htmx requests with HX-Redirect to the login.
// What compose.js reports itself (the draft form's saves and sends, attachment uploads) is not said twice.
(() => {
  const box = document.getElementById("request-error");
  const text = document.getElementById("request-error-text");
  const reload = document.getElementById("request-error-reload");
  const close = document.getElementById("request-error-close");
  if (!box || !text || !reload || !close) return;
  const REPORTED_BY_PAGE = "[data-draft-form], [data-drop-zone]";
  let shown = null; // { kind, key } of the message on the page
  let focusBefore = null;

  function requestKey(detail) {
    const config = detail.requestConfig || {};
    const path = (detail.pathInfo && detail.pathInfo.requestPath) || config.path || "";
    return `${String(config.verb || "").toUpperCase()} ${path}`;
  }
  function reportedByPage(detail) {
    const elt = detail.elt;
    // The recipient picker sits inside the draft form, but its searches are not the draft's saves.
    return elt instanceof Element && Boolean(elt.closest(REPORTED_BY_PAGE)) && !elt.closest("[data-vzd-search]");
  }
  function kindOf(status) {
    if (status === 403) return "forbidden";
    if (status === 413) return "tooLarge";
    if (status === 429) return "tooMany";
    if (status === 503) return "unavailable"; // the database cannot be reached for now (kimportal.unavailable)
    if (status >= 500) return "server";
    return "refused";
  }
  function show(kind, key) {
    if (shown && shown.kind === kind) {
      shown.key = key;
      return;
    }
    shown = { kind, key };
    if (!box.contains(document.activeElement)) focusBefore = document.activeElement;
    text.textContent = box.dataset[`${kind}Text`] || "";
    // What a reload cures: a page that is out of date (a new sign-in elsewhere gave the session a new CSRF token).
    reload.hidden = !["forbidden", "refused"].includes(kind);
    close.hidden = false;
  }
  function hide({ restoreFocus = false } = {}) {
    if (!shown) return;
    const hadFocus = box.contains(document.activeElement);
    shown = null;
    text.textContent = "";
    reload.hidden = true;
    close.hidden = true;
    if (!restoreFocus && !hadFocus) return;
    const back = focusBefore instanceof HTMLElement && focusBefore.isConnected && focusBefore !== document.body
      ? focusBefore : document.getElementById("main");
    if (back) back.focus();
  }

  document.addEventListener("htmx:responseError", (ev) => {
    if (reportedByPage(ev.detail)) return;
    const status = ev.detail.xhr ? ev.detail.xhr.status : 0;
    show(kindOf(status), requestKey(ev.detail));
  });
  for (const type of ["htmx:sendError", "htmx:timeout"]) {
    document.addEventListener(type, (ev) => {
      if (!reportedByPage(ev.detail)) show("offline", requestKey(ev.detail));
    });
  }
  document.addEventListener("htmx:afterRequest", (ev) => {
    if (!shown || !ev.detail.successful) return;
    if (shown.key === requestKey(ev.detail)) hide();
  });
  reload.addEventListener("click", () => window.location.reload());
  close.addEventListener("click", () => hide({ restoreFocus: true }));
  box.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape" || !shown) return;
    ev.preventDefault();
    hide({ restoreFocus: true });
  });
})();

// Tell the inbox socket which rows this page shows and where new mail goes on top: the server then sends
// changes of those rows only (a busy mailbox has thousands of rows, a page shows fifty). "since" is the newest
// message the list knew when the server rendered it: the socket sends the rows of mail of the list's view stored
// after that (before it listened, nobody was told), once per list; "at" is when the list was read: the socket
// replays the changes of its rows and the new mail sent since then.
let lastWatch = null;
function declareWatch(force = false) {
  const form = document.getElementById("watch-form");
  // Before its socket first opened there is nobody to tell: the opening declares what the page shows then.
  if (!form || (!force && lastWatch === null)) return;
  const rows = Array.from(document.querySelectorAll(".msg-row[id^='msg-']")).map((row) => row.id.slice(4));
  const live = document.querySelector("[data-live-mailboxes]");
  const mailboxes = live ? live.dataset.liveMailboxes.split(/\s+/).filter(Boolean).map((m) => m.replace("mb-", "")) : [];
  const watch = rows.join(",");
  const fresh = mailboxes.join(",");
  const since = live ? live.dataset.liveSince || "" : "";
  const view = live ? live.dataset.liveView || "" : "";
  const list = document.querySelector("[data-live-at]");
  const at = list ? list.dataset.liveAt || "" : "";
  if (!force && lastWatch === `${watch}|${fresh}|${since}|${view}|${at}`) return;
  lastWatch = `${watch}|${fresh}|${since}|${view}|${at}`;
  form.querySelector("[name=watch]").value = watch;
  form.querySelector("[name=new]").value = fresh;
  form.querySelector("[name=since]").value = since;
  form.querySelector("[name=view]").value = view;
  form.querySelector("[name=at]").value = at;
  document.body.dispatchEvent(new Event("live-watch"));
}
// Once per opening of the socket the watch form belongs to (the page's one socket: on a message page the message's).
document.addEventListener("htmx:wsOpen", (ev) => {
  const form = document.getElementById("watch-form");
  if (form && ev.target instanceof Element && ev.target.contains(form)) declareWatch(true);
});
document.addEventListener("htmx:afterSettle", () => declareWatch());
document.addEventListener("htmx:wsAfterMessage", () => declareWatch());
// A swapped-in list (a page link, a filter, a search) has its own "at": its watch frame makes the socket send again
// the new rows that went to the list it replaced. One may have reached the new list before it was declared: a row
// the page shows already is not added twice.
document.addEventListener("htmx:oobBeforeSwap", (ev) => {
  const { target, fragment } = ev.detail;
  if (!(target instanceof Element) || !target.hasAttribute("data-live-mailboxes") || !fragment) return;
  const row = fragment.querySelector(".msg-row[id^='msg-']");
  if (row && document.getElementById(row.id)) ev.detail.shouldSwap = false;
});

// --- Narrow windows: the navigation folds behind the menu button ------------------------------
// The button names what it folds in aria-controls (the top menu, and the mailbox list where a page has one);
// the stylesheet hides those below 1,100 px unless they carry .is-open. Wide windows ignore the state.
function setNavOpen(open, { focusButton = false } = {}) {
  const button = document.getElementById("nav-toggle");
  if (!button) return;
  button.setAttribute("aria-expanded", open ? "true" : "false");
  (button.getAttribute("aria-controls") || "").split(/\s+/).filter(Boolean).forEach((id) => {
    document.getElementById(id)?.classList.toggle("is-open", open);
  });
  if (focusButton) button.focus();
}
document.addEventListener("click", (ev) => {
  const button = ev.target instanceof Element ? ev.target.closest("#nav-toggle") : null;
  if (button) setNavOpen(button.getAttribute("aria-expanded") !== "true");
});
// Escape inside the open menu closes it and returns to the button, as for any disclosure.
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Escape") return;
  const button = document.getElementById("nav-toggle");
  if (!button || button.getAttribute("aria-expanded") !== "true") return;
  const ids = (button.getAttribute("aria-controls") || "").split(/\s+/).filter(Boolean);
  const inside = ev.target === button || ids.some((id) => document.getElementById(id)?.contains(ev.target));
  if (inside && getComputedStyle(button).display !== "none") setNavOpen(false, { focusButton: true });
});

// --- The focus survives a redraw ------------------------------------------------------------------
// A socket's message replaces parts of the page out of band (the lock panel on connect and after every lock change,
// the note list …), and htmx keeps the focus only through its own swap of an HTTP answer, and only on an element with
// an id. A keyboard user whose focus was inside what got replaced would start again from the top of the page. The
// focus goes to the same control in the new content (the same id, or the same kind of control of the same form with
// the same name and text); if that control is gone, to the region that replaced the old one (made focusable), not to
// another control: a key press meant for "Bearbeiten" must not press the "Freigeben" or "Sperre aufheben" drawn in
// its place, and on the region a screen reader reads what changed. The next Tab reaches the new control.
(() => {
  let kept = null;
  const sameText = (el) => (el.textContent || "").replace(/\s+/g, " ").trim();
  function controlKey(el) {
    const form = el.closest("form");
    return [el.tagName, el.getAttribute("type"), el.getAttribute("name"), el.getAttribute("data-shortcut"),
      el.getAttribute("href"), form && form.getAttribute("action"), sameText(el)].join("\u001f");
  }
  function usable(el) {
    return el instanceof HTMLElement && el.isConnected && !el.matches(":disabled") && el.getClientRects().length > 0;
  }
  function focusOn(el) {
    if (!usable(el)) return false;
    el.focus({ preventScroll: true });
    return document.activeElement === el;
  }
  function remember() {
    const el = document.activeElement;
    kept = null;
    if (!(el instanceof HTMLElement) || el === document.body) return;
    // Read now, not after the swap: a removed element's parent is gone once it is out of the page, and so is a form
    // around the swapped part (which its key names). Its place among the alike before it is counted within each of
    // its ancestors, as the new place is counted within the one that replaced or kept the content.
    const key = controlKey(el);
    const before = [];
    for (const other of document.querySelectorAll(el.tagName)) {
      if (other === el) break;
      if (controlKey(other) === key) before.push(other);
    }
    const ancestors = [];
    for (let node = el; node; node = node.parentElement) ancestors.push(node);
    kept = { key, ancestors, places: ancestors.map((node) => before.filter((other) => node.contains(other)).length) };
  }
  function restore() {
    const { key, ancestors, places } = kept || { key: "", ancestors: [], places: [] };
    kept = null;
    const el = ancestors[0];
    // Still there, or the page (or htmx) has put the focus somewhere itself.
    if (!el || el.isConnected || (document.activeElement && document.activeElement !== document.body)) return;
    if (el.id && focusOn(document.getElementById(el.id))) return;
    // The outermost of them that left the page is what was replaced; its parent stayed.
    const at = ancestors.findIndex((node) => node.isConnected);
    if (at < 1) return;
    const replaced = ancestors[at - 1];
    const parent = ancestors[at];
    // Replaced whole (an id, as out-of-band swaps are addressed), or its container kept and the content swapped.
    const scope = replaced.id ? at - 1 : at;
    const fresh = replaced.id ? document.getElementById(replaced.id) : parent;
    if (!fresh) return;
    // The n-th of several alike (two "Entfernen" of a list) stays the n-th, counted within the same element.
    const twins = Array.from(fresh.querySelectorAll(el.tagName)).filter((other) => controlKey(other) === key);
    if (focusOn(twins[Math.min(places[scope], twins.length - 1)])) return;
    if (fresh === parent) return;
    if (!fresh.hasAttribute("tabindex") && fresh.tabIndex < 0) fresh.setAttribute("tabindex", "-1");
    focusOn(fresh);
  }
  document.addEventListener("htmx:wsBeforeMessage", remember);
  document.addEventListener("htmx:wsAfterMessage", restore);
  // An HTTP answer that replaces the control (the claim's panel brings "Freigeben" for "Bearbeiten"): htmx keeps the
  // focus only on an element of the same id; what it did not keep is placed as above.
  document.addEventListener("htmx:beforeSwap", remember);
  document.addEventListener("htmx:afterSwap", restore);
})();

// --- Detail page: read-lock and conflict hints -------------------------------------------------
// The lock panel is replaced live; action buttons follow whoever holds the lock. The forms keep the
// version the user loaded, so the server's conflict guard still stops a stale action.
function syncLockState() {
  const panel = document.getElementById("lock-panel");
  const work = document.getElementById("work");
  if (!panel || !work) return;
  const lockedByOther = panel.dataset.lockedByOther === "1";
  document.querySelectorAll(".lock-guarded").forEach((fs) => {
    // A colleague's claim disables the control under a keyboard user's focus (not redrawn, so the focus keeping above
    // does not see it): a disabled control is announced as nothing and Tab goes on from it. The focus goes to the
    // lock panel, which names who holds the letter, never to another control; enabling again moves nothing.
    const focusLost = lockedByOther && !fs.disabled && fs.contains(document.activeElement);
    fs.disabled = lockedByOther;
    if (focusLost) panel.focus();
  });
  const banner = document.getElementById("stale-banner");
  if (banner) banner.hidden = panel.dataset.version === work.dataset.loadedVersion;
}
document.addEventListener("DOMContentLoaded", syncLockState);
document.addEventListener("htmx:afterSettle", syncLockState);
document.addEventListener("htmx:oobAfterSwap", syncLockState);
document.addEventListener("lock-changed", syncLockState);

// --- Detail page: a colleague's note arriving live is announced --------------------------------
// The socket replaces the note list whole, so a live region on it would not be read: the new notes' announcements
// go into #note-announce, a polite region that is in the page, empty, from the start and is never swapped. Not
// announced: the notes the page loaded with, and the user's own (this page sent them; its socket may bring the
// list again before the form's answer shows the note).
let notesToAnnounce = [];
document.addEventListener("htmx:oobBeforeSwap", (ev) => {
  const { target, fragment } = ev.detail;
  if (!(target instanceof Element) || target.id !== "note-list" || !fragment) return;
  const user = document.body.dataset.user;
  notesToAnnounce = Array.from(fragment.querySelectorAll(".note[id^='note-']"))
    .filter((note) => !document.getElementById(note.id) && note.dataset.author !== user)
    .map((note) => note.dataset.announce);
});
document.addEventListener("htmx:oobAfterSwap", (ev) => {
  if (!(ev.target instanceof Element) || ev.target.id !== "note-list") return;
  const texts = notesToAnnounce;
  notesToAnnounce = [];
  const region = document.getElementById("note-announce");
  if (!region || !texts.length) return;
  // New paragraphs each time: the same words again (a colleague's second note) are read again too.
  region.replaceChildren(...texts.map((text) => Object.assign(document.createElement("p"), { textContent: text })));
});

// --- Presence: tell colleagues while this user is writing a note ------------------------------
let writingTimer = null;
function setWriting(value) {
  const input = document.querySelector("#presence-form input[name=writing]");
  if (!input || input.value === value) return;
  input.value = value;
  document.body.dispatchEvent(new Event("presence-change"));
}
document.addEventListener("input", (ev) => {
  if (!(ev.target instanceof HTMLElement) || !ev.target.hasAttribute("data-presence-writing")) return;
  setWriting("1");
  clearTimeout(writingTimer);
  writingTimer = setTimeout(() => setWriting("0"), 5000);
});

// --- Keyboard shortcuts (j/k, Enter, c, e, a, /, ?) -------------------------------------------
function typingInField(ev) {
  const t = ev.target;
  return t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
}
function moveRow(step) {
  const rows = Array.from(document.querySelectorAll(".msg-row"));
  if (!rows.length) return;
  const index = rows.indexOf(document.activeElement);
  const next = rows[Math.max(0, Math.min(rows.length - 1, index < 0 ? 0 : index + step))];
  next.focus();
  next.scrollIntoView({ block: "nearest" });
}
document.addEventListener("keydown", (ev) => {
  const dialog = document.getElementById("shortcut-help");
  if (ev.key === "Escape" && dialog && dialog.open) { dialog.close(); return; }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || typingInField(ev)) return;
  const byShortcut = (key) => document.querySelector(`[data-shortcut="${key}"]`);
  switch (ev.key) {
    case "j": moveRow(1); break;
    case "k": moveRow(-1); break;
    case "/": { const el = byShortcut("/"); if (el) { ev.preventDefault(); el.focus(); } break; }
    case "c": case "e": { const el = byShortcut(ev.key); if (el && !el.disabled && !el.closest("fieldset:disabled")) { ev.preventDefault(); el.click(); } break; }
    case "a": { const el = byShortcut("a"); if (el && !el.closest("fieldset:disabled")) { ev.preventDefault(); el.focus(); } break; }
    case "?": if (dialog) { ev.preventDefault(); dialog.showModal(); } break;
    default: return;
  }
});
document.addEventListener("click", (ev) => {
  if (ev.target instanceof HTMLElement && ev.target.id === "shortcut-help-button") {
    document.getElementById("shortcut-help")?.showModal();
  }
});

// --- Idle logout: warn a minute before the server ends a session nobody uses ----------------------
// The server is the judge (mailbox.middleware): it ends a session KIMPORTAL_IDLE_LOGOUT_MINUTES after the last
// request the user made. The page asks it how long is left before warning and before leaving, so another tab's
// activity keeps this one signed in. What counts: page loads, htmx requests the user's own input triggered, and
// typing or clicking in the page (a long note makes no request: the page tells the server when it checks).
// htmx requests nothing the user did triggered (reconnect reloads, timed triggers) carry the background header.
(() => {
  const box = document.getElementById("idle-warning");
  if (!box || !window.fetch) return;
  const BACKGROUND = "X-Portal-Background";
  const idleSeconds = Number(box.dataset.idleSeconds) || 0;
  if (idleSeconds <= 0) return;
  const text = document.getElementById("idle-warning-text");
  const stay = document.getElementById("idle-warning-stay");
  let lastCounted = Date.now(); // the last request the server counted as activity
  let lastInput = 0;
  let timer = null;

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; } catch { return ""; }
  }
  function showWarning(show) {
    stay.hidden = !show;
    // Filling the always-present alert region is what screen readers announce.
    text.textContent = show ? text.dataset.text : "";
  }
  function schedule(seconds) {
    clearTimeout(timer);
    timer = setTimeout(check, Math.max(1, seconds) * 1000);
  }
  async function ask(keepAlive) {
    const options = keepAlive
      ? { method: "POST", headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin" }
      : { method: "GET", headers: { [BACKGROUND]: "1" }, credentials: "same-origin" };
    if (keepAlive) lastCounted = Date.now();
    const response = await fetch(box.dataset.sessionUrl, options);
    // A refusal or a 503 (the database restarting) says nothing about the session: ask again soon, as offline.
    if (!response.ok) throw new Error(`session check: ${response.status}`);
    return response.json();
  }
  async function check() {
    let answer;
    try {
      answer = await ask(lastInput > lastCounted);
    } catch {
      schedule(15); // the server is not reachable: ask again soon, the server's clock decides anyway
      return;
    }
    const remaining = Number(answer.remaining) || 0;
    const warn = Number(answer.warn) || 60;
    if (remaining <= 0) {
      window.location.assign(box.dataset.loginUrl);
    } else if (remaining > warn) {
      showWarning(false);
      schedule(remaining - warn);
    } else {
      showWarning(true);
      // Just before the end: input during the warning still reaches the server in time.
      schedule(remaining > 3 ? remaining - 2 : remaining + 1);
    }
  }
  stay.addEventListener("click", async () => {
    lastInput = Date.now();
    showWarning(false);
    clearTimeout(timer);
    await check();
  });
  ["keydown", "pointerdown", "wheel", "touchstart"].forEach((type) => {
    document.addEventListener(type, (ev) => { if (ev.isTrusted) lastInput = Date.now(); }, { passive: true, capture: true });
  });
  document.addEventListener("htmx:configRequest", (ev) => {
    const trigger = ev.detail.triggeringEvent;
    if (trigger && trigger.isTrusted) {
      lastCounted = Date.now();
      showWarning(false);
      schedule(idleSeconds - 60);
    } else {
      ev.detail.headers[BACKGROUND] = "1";
    }
  });
  schedule(idleSeconds - 60);
})();
