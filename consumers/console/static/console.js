// Herald console: small, dependency-free behaviour. Each page's script hooks itself on `data-` attributes.
"use strict";

/** The CSRF token of this session, for POSTs made from scripts. */
function heraldCsrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// "/" focuses the page's main search or filter field, as in most consoles; not while typing in a field.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  if (event.key === "/" && !typing) {
    const field = document.querySelector("[data-search]");
    if (field) { event.preventDefault(); field.focus(); }
  }
});
