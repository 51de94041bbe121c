// Herald console, health page: fetch the numbers again every few seconds and swap them in. The page is whole
// without this script (its Refresh link reloads it); a failed fetch keeps the last numbers and tries again.
"use strict";

(() => {
  const box = document.querySelector("[data-health]");
  if (!box) return;
  const every = Math.max(2, Number(box.dataset.refresh) || 10) * 1000;
  const source = box.dataset.source;

  async function refresh() {
    if (document.hidden) return; // nobody is looking: no load on the worker
    try {
      const response = await fetch(source, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.status === 401 || response.redirected) { window.clearInterval(timer); return; } // signed out
      if (!response.ok) return;
      const html = await response.text();
      const parsed = new DOMParser().parseFromString(html, "text/html");
      box.replaceChildren(...parsed.body.childNodes);
      box.dataset.updated = String(Date.now());
    } catch (error) {
      // The worker is restarting or the network dropped: the next tick tries again.
    }
  }

  const timer = window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
