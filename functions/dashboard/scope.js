// The caller key's scope (GET /me): with a read key the dashboard hides every control that would write (submit,
// cancel, retry, pause, upload), since the API would answer them 403 FORBIDDEN. app.js calls
// JobsScope.refresh(key) whenever it connects with a key; the page's state is <body data-scope="full|read">.
(() => {
  "use strict";

  // What a read key cannot do, by selector: the forms and buttons that POST or DELETE.
  const WRITE_CONTROLS = [
    "section.card:has(#submit-form)",
    "#action-cancel",
    "#action-retry",
    "#retry-all",
    "#cancel-all",
    "#image-form",
    "#types-table button[aria-pressed]",
  ];

  const style = document.createElement("style");
  style.textContent = `body[data-scope="read"] :is(${WRITE_CONTROLS.join(", ")}) { display: none !important; }`;
  document.head.appendChild(style);

  function badge() {
    let found = document.getElementById("scope-badge");
    if (!found) {
      found = document.createElement("span");
      found.id = "scope-badge";
      found.className = "badge";
      found.title = "This key may only read: writing controls are hidden";
      found.textContent = "read-only key";
      const conn = document.getElementById("conn");
      if (conn && conn.parentNode) conn.parentNode.insertBefore(found, conn.nextSibling);
    }
    return found;
  }

  function apply(scope) {
    document.body.dataset.scope = scope;
    badge().hidden = scope !== "read";
  }

  let asked = 0;

  async function refresh(key) {
    const mine = ++asked;
    if (!key) {
      apply("full");
      return;
    }
    try {
      const response = await fetch("me", { headers: { "x-api-key": key }, cache: "no-store" });
      if (mine !== asked) return; // another key was entered meanwhile
      const body = response.ok ? await response.json() : null;
      // Unknown until the API says: a failed read keeps what was shown (app.js reports the connection problem).
      if (body && typeof body.scope === "string") apply(body.scope === "read" ? "read" : "full");
    } catch (_err) {
      // app.js shows the connection state; the controls stay as they were
    }
  }

  window.JobsScope = { refresh, apply };
})();
