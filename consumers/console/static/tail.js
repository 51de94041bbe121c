// Herald console, live tail: follows /console/tail/stream (server-sent events) and puts each new status on top of
// the table. The server renders the rows (escaped); this script only places them, drops repeats by their key,
// keeps the table to 500 rows, and holds new rows while paused.
"use strict";

(() => {
  const table = document.querySelector("table[data-tail]");
  if (!table || !("EventSource" in window)) return;
  const body = table.tBodies[0];
  const state = document.querySelector("[data-tail-state]");
  const toggle = document.querySelector("[data-tail-toggle]");
  const notice = document.querySelector("[data-tail-notice]");
  const MAX_ROWS = 500;
  const seen = new Set(Array.from(body.rows, (row) => row.dataset.key));
  const held = [];
  let paused = false;
  let skipped = 0;

  // Changing a filter reloads the page with the new query (the form's button does the same without script).
  const filters = document.querySelector("form[data-tail-filters]");
  if (filters) {
    for (const select of filters.querySelectorAll("select")) {
      select.addEventListener("change", () => filters.requestSubmit());
    }
  }

  function setState(text, live) {
    state.textContent = text;
    state.classList.toggle("live", live);
  }

  function tell() {
    const parts = [];
    if (paused && held.length) parts.push(`${held.length} new while paused`);
    if (skipped) parts.push(`${skipped} skipped (too many to show at once)`);
    notice.textContent = parts.join(" · ");
  }

  function place(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    const row = template.content.firstElementChild;
    if (!row || seen.has(row.dataset.key)) return;
    seen.add(row.dataset.key);
    row.classList.add("fresh");
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) {
      const last = body.rows[body.rows.length - 1];
      seen.delete(last.dataset.key);
      last.remove();
    }
  }

  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.setAttribute("aria-pressed", String(paused));
    toggle.textContent = paused ? "Resume" : "Pause";
    if (!paused) held.splice(0).forEach(place);
    setState(paused ? "paused" : (source.readyState === EventSource.OPEN ? "live" : "reconnecting…"),
             !paused && source.readyState === EventSource.OPEN);
    tell();
  });

  state.hidden = false;
  toggle.hidden = false;
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", () => { if (!paused) setState("live", true); });
  source.addEventListener("error", () => {
    // CLOSED: the browser gave up (signed out, or the console is off); otherwise it retries by itself.
    if (source.readyState === EventSource.CLOSED) setState("disconnected: reload the page", false);
    else setState("reconnecting…", false);
  });
  source.addEventListener("status", (event) => {
    if (!paused) { place(event.data); return; }
    held.push(event.data);
    if (held.length > MAX_ROWS) { held.shift(); skipped += 1; }
    tell();
  });
  source.addEventListener("dropped", (event) => {
    skipped += Number(event.data) || 0;
    tell();
  });
})();
