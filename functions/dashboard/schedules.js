/* Jobs dashboard: the Schedules page (#/schedules). Plain JS, no build step, loaded after app.js; it reads the key
   app.js keeps in localStorage, builds its elements with app.js's el(), and calls the API with URLs relative to the
   page, as app.js does.
   List, create (with the next five run times, computed by the server as you type), enable/disable, run now, delete. */
(() => {
  "use strict";

  const KEY_STORAGE = "jobs-dashboard.apiKey";
  const REFRESH_MS = 3000;
  const PREVIEW_DELAY_MS = 250;
  const $ = (id) => document.getElementById(id);

  const el = window.JobsDom.el; // app.js's, loaded before this file

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  async function api(method, path, body) {
    const key = localStorage.getItem(KEY_STORAGE) || "";
    const init = { method, headers: { "x-api-key": key }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text.slice(0, 300), code: `HTTP_${response.status}` };
    }
    if (!response.ok) {
      const error = new Error((data && data.error) || `HTTP ${response.status}`);
      error.code = (data && data.code) || `HTTP_${response.status}`;
      throw error;
    }
    return data;
  }

  const visible = () => !$("view-schedules").hidden && Boolean(localStorage.getItem(KEY_STORAGE));
  const say = (text) => ($("schedules-status").textContent = text);

  // ---------------------------------------------------------------- the list

  async function load() {
    const all = [];
    let cursor = null;
    do {
      const page = await api("GET", `schedules?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      all.push(...page.schedules);
      cursor = page.nextCursor;
    } while (cursor);
    render(all);
  }

  function render(schedules) {
    $("schedules-empty").hidden = schedules.length > 0;
    const rows = schedules.map((s) => {
      const actions = el(
        "td",
        { class: "actions" },
        button(s.enabled ? "Disable" : "Enable", `${s.enabled ? "Disable" : "Enable"} ${s.name}`, () =>
          act(s, "PATCH", `schedules/${s.id}`, { enabled: !s.enabled }, `${s.name} is ${s.enabled ? "disabled" : "enabled"}.`),
        ),
        button("Run now", `Run ${s.name} now`, () => act(s, "POST", `schedules/${s.id}/run`, undefined, null)),
        button("Delete", `Delete ${s.name}`, () => {
          if (window.confirm(`Delete the schedule ${s.name}? Its jobs stay.`)) act(s, "DELETE", `schedules/${s.id}`, undefined, `${s.name} was deleted.`);
        }),
      );
      const lastJob = s.lastJobId ? el("a", { href: `#/jobs/${encodeURIComponent(s.lastJobId)}`, text: s.lastJobId.slice(0, 8) }) : "—";
      const state = el("span", { class: `badge s-${s.enabled ? "running" : "paused"}`, text: s.enabled ? "enabled" : "disabled" });
      return el(
        "tr",
        { dataset: { schedule: s.name } },
        el("td", { text: s.name }),
        el("td", {}, el("code", { text: s.cron })),
        el("td", { text: s.timezone }),
        el("td", { dataset: { col: "state" } }, state),
        el("td", { dataset: { col: "next" }, text: when(s.nextRunAt) }),
        el("td", { text: when(s.lastRunAt) }),
        el("td", { dataset: { col: "last-job" } }, lastJob),
        el("td", { class: "wrap error-text", dataset: { col: "error" }, text: s.lastError || "" }),
        actions,
      );
    });
    $("schedules-table").tBodies[0].replaceChildren(...rows);
  }

  function button(text, label, onClick) {
    const node = el("button", { type: "button", class: "small secondary", "aria-label": label, text });
    node.addEventListener("click", onClick);
    return node;
  }

  async function act(schedule, method, path, body, done) {
    try {
      const answer = await api(method, path, body);
      say(done || `${schedule.name} ran now: job ${answer.id.slice(0, 8)} is ${answer.status}.`);
    } catch (err) {
      say(`Could not change ${schedule.name}: ${err.message} (${err.code}).`);
    }
    refresh();
  }

  // ---------------------------------------------------------------- create, with the preview of the next runs

  let previewTimer = null;
  let previewSeq = 0;

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
  }

  async function preview() {
    const cron = $("schedule-cron").value.trim();
    const timezone = $("schedule-timezone").value.trim() || "UTC";
    const seq = ++previewSeq;
    const list = $("schedule-preview");
    if (!cron) {
      list.replaceChildren();
      $("schedule-preview-error").textContent = "";
      return;
    }
    try {
      const answer = await api("GET", `schedules/preview?cron=${encodeURIComponent(cron)}&timezone=${encodeURIComponent(timezone)}&count=5`);
      if (seq !== previewSeq) return; // a later keystroke's answer wins
      list.replaceChildren(...answer.runs.map((run) => el("li", { text: `${when(run)} (${run})` })));
      $("schedule-preview-error").textContent = "";
    } catch (err) {
      if (seq !== previewSeq) return;
      list.replaceChildren();
      $("schedule-preview-error").textContent = err.message;
    }
  }

  async function create(event) {
    event.preventDefault();
    const error = $("schedule-error");
    error.textContent = "";
    let payload = {};
    const text = $("schedule-payload").value.trim();
    if (text) {
      try {
        payload = JSON.parse(text);
      } catch (err) {
        error.textContent = `The payload is not valid JSON: ${err.message}`;
        return;
      }
    }
    const body = {
      name: $("schedule-name").value.trim(),
      cron: $("schedule-cron").value.trim(),
      timezone: $("schedule-timezone").value.trim() || "UTC",
      job: { type: $("schedule-type").value, payload },
      enabled: $("schedule-enabled").checked,
    };
    try {
      const created = await api("POST", "schedules", body);
      say(`${created.name} was created; its next run is ${when(created.nextRunAt)}.`);
      $("schedule-form").reset();
      $("schedule-preview").replaceChildren();
    } catch (err) {
      error.textContent = `${err.message} (${err.code})`;
    }
    refresh();
  }

  async function loadTypes() {
    const select = $("schedule-type");
    if (select.options.length) return;
    try {
      const data = await api("GET", "types");
      select.replaceChildren(...data.types.map((t) => el("option", { value: t.name, text: t.name })));
    } catch {
      // the next refresh tries again
    }
  }

  // ---------------------------------------------------------------- refresh while the page is shown

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    if (visible()) {
      try {
        await Promise.all([load(), loadTypes()]);
      } catch (err) {
        say(`Could not load the schedules: ${err.message} (${err.code}).`);
      }
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  $("schedule-form").addEventListener("submit", create);
  $("schedule-cron").addEventListener("input", schedulePreview);
  $("schedule-timezone").addEventListener("input", schedulePreview);
  window.addEventListener("hashchange", () => setTimeout(refresh, 0));
  refresh();
})();
