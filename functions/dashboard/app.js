/* Jobs dashboard: plain JS, no build step. Every API call uses a URL relative to the page, so the same file works
   at http://localhost:3000/ and at an API Gateway stage path such as https://.../prod/.
   One file although it is long: without a build step or modules, the views share this closure's state (the key,
   the refresh loop, the router); the sections below are marked with "// ----". */
(() => {
  "use strict";

  const STATUSES = ["scheduled", "waiting", "pending", "processing", "retrying", "completed", "failed", "cancelled"];
  const FINAL = new Set(["completed", "failed", "cancelled"]);
  const CANCELLABLE = new Set(["scheduled", "waiting", "pending", "retrying"]);
  const RETRYABLE = new Set(["failed", "cancelled"]);
  const REFRESH_MS = 1500;
  const THROUGHPUT_EVERY = 4; // ticks: the chart's buckets are minutes
  const PAGE_SIZE = 20;
  const FILL_REQUESTS = 5; // requests at most behind one page of the jobs table
  const KEY_STORAGE = "jobs-dashboard.apiKey";

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  // The pages loaded after this one (schedules.js) build their elements with the same helper.
  window.JobsDom = Object.freeze({ el });

  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setBadge(node, status) {
    const value = status || "";
    if (node.dataset.status === value && node.textContent === value) return;
    node.dataset.status = value;
    node.className = "badge" + (value ? " s-" + value : "");
    node.textContent = value;
  }

  function badge(status) {
    const node = el("span");
    setBadge(node, status);
    return node;
  }

  const pad = (n, width = 2) => String(n).padStart(width, "0");
  function clock(iso, withMs) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${text}.${pad(d.getMilliseconds(), 3)}` : text;
  }
  function dateTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(iso, true)}`;
  }
  const seconds = (ms) => `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  const percent = (rate) => `${(100 * (Number(rate) || 0)).toFixed(1)} %`;
  const shortId = (id) => String(id).slice(0, 8);
  const pretty = (value) => (value === undefined ? "" : JSON.stringify(value, null, 2));

  // ---------------------------------------------------------------- API access

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.code = (body && body.code) || `HTTP_${status}`;
      this.details = body && body.details;
    }
  }

  const state = {
    key: "",
    types: [],
    typesLoaded: false,
    filters: { status: "", type: "" },
    cursors: [null], // cursor of each visited page; the last one is the page shown
    nextCursor: null,
    jobsSeq: 0,
    view: "overview",
    detailId: null,
    detailRendered: { id: null, count: 0 },
    failuresSeq: 0,
    bulkBusy: false,
    tick: 0,
    lastChart: "",
    finished: undefined, // "completed:failed" of the last stats
    finishedChanged: false,
  };

  async function api(method, path, body) {
    if (!state.key) throw new ApiError(0, { error: "No API key entered", code: "NO_KEY" });
    const init = { method, headers: { "x-api-key": state.key }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init); // relative: resolved against the page's URL
    } catch (err) {
      connection(false, `Cannot reach the API (${err.message || "network error"}). Retrying every ${REFRESH_MS / 1000} s…`);
      throw new ApiError(0, { error: "Cannot reach the API (network error)", code: "NETWORK" });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text.slice(0, 300) || response.statusText, code: `HTTP_${response.status}` };
    }
    if (response.status === 403 && (!data || data.code === "FORBIDDEN")) {
      keyRefused();
      throw new ApiError(403, data || { error: "Forbidden", code: "FORBIDDEN" });
    }
    if (response.status >= 500) {
      connection(false, `The API answered ${response.status}${data && data.code ? " " + data.code : ""}: ${(data && data.error) || ""}`);
    } else {
      connection(true);
    }
    if (!response.ok) throw new ApiError(response.status, data || {});
    return data;
  }

  // The key's last characters tell two keys apart; a short key would be shown almost whole, so it gets no hint.
  const KEY_HINT_MIN_LENGTH = 12;
  function keyHint(key) {
    return key && key.length >= KEY_HINT_MIN_LENGTH ? ` · key …${key.slice(-4)}` : "";
  }

  function connection(online, message) {
    const conn = $("conn");
    const banner = $("banner");
    conn.classList.toggle("online", online);
    conn.classList.toggle("offline", !online);
    setText(conn, online ? `Connected${keyHint(state.key)}` : "Connection problem");
    if (online) {
      banner.hidden = true;
    } else {
      setText(banner, message);
      banner.hidden = false;
    }
  }

  // An error {error, code, details} as readable DOM: message, code, and the details (a list of field errors or JSON).
  function showError(box, err, prefix) {
    box.replaceChildren();
    if (!err) {
      box.hidden = true;
      return;
    }
    const code = err.code || "ERROR";
    box.append(
      el("strong", { text: prefix ? `${prefix}: ` : "" }),
      el("span", { class: "code-tag", text: code }),
      " ",
      el("span", { class: "err-message", text: err.message || String(err) }),
    );
    if (err.status) box.append(el("span", { class: "muted small", text: ` (HTTP ${err.status})` }));
    const details = err.details;
    if (Array.isArray(details) && details.length) {
      box.append(
        el(
          "ul",
          { class: "err-details" },
          ...details.map((d) =>
            el("li", {}, d && d.field ? el("code", { text: d.field }) : "", d && d.field ? ": " : "", d && d.message ? d.message : JSON.stringify(d)),
          ),
        ),
      );
    } else if (details && typeof details === "object") {
      box.append(el("pre", { class: "code small", text: pretty(details) }));
    }
    box.hidden = false;
  }

  // ---------------------------------------------------------------- the API key

  const dialog = $("key-dialog");

  function askForKey(message) {
    $("key-error").textContent = message || "";
    $("key-input").value = "";
    $("key-cancel").hidden = !state.key || Boolean(message);
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
  }

  function keyRefused() {
    localStorage.removeItem(KEY_STORAGE);
    const conn = $("conn");
    conn.classList.remove("online");
    conn.classList.add("offline");
    setText(conn, "Key refused");
    askForKey("The API refused this key (403 FORBIDDEN). Enter a valid API key.");
  }

  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      $("key-error").textContent = "Enter an API key.";
      return;
    }
    const previous = state.key;
    state.key = key;
    $("key-submit").disabled = true;
    $("key-error").textContent = "Checking the key…";
    try {
      await api("GET", "stats");
      localStorage.setItem(KEY_STORAGE, key);
      $("key-error").textContent = "";
      dialog.close();
      connected();
    } catch (err) {
      if (err.status !== 403) {
        state.key = previous;
        $("key-error").textContent = `Could not check the key: ${err.message} (${err.code}).`;
      } else {
        state.key = "";
      }
    } finally {
      $("key-submit").disabled = false;
    }
  });
  $("key-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("cancel", (event) => {
    if (!state.key) event.preventDefault(); // nothing works without a key
  });
  $("change-key").addEventListener("click", () => askForKey(""));

  function connected() {
    state.cursors = [null];
    state.detailRendered = { id: null, count: 0 };
    state.lastChart = "";
    state.finished = undefined;
    document.querySelectorAll("#jobs-table tbody, #failures-table tbody").forEach((tbody) => tbody.replaceChildren());
    connection(true);
    if (window.JobsScope) window.JobsScope.refresh(state.key); // a read key hides the write controls (scope.js)
    loadTypes();
    refreshNow();
  }

  // ---------------------------------------------------------------- refresh loop

  let timer = null;
  let running = false;
  let again = false;

  function refreshNow() {
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    tick();
  }

  async function tick() {
    running = true;
    try {
      if (state.key && !dialog.open) {
        const tasks = [refreshStats()];
        if (!state.typesLoaded) tasks.push(loadTypes());
        if (state.view === "overview") {
          tasks.push(refreshJobs());
          // Every few ticks, and at once when a job finished since the last stats
          if (state.tick % THROUGHPUT_EVERY === 0 || !state.lastChart || state.finishedChanged) {
            tasks.push(refreshThroughput());
            if (window.JobsCost) tasks.push(window.JobsCost.refresh(api, state.finishedChanged)); // cost.js
            state.finishedChanged = false;
          }
        } else if (state.view === "detail") {
          tasks.push(refreshDetail());
        } else if (state.view === "failures") {
          tasks.push(refreshFailures());
        } else if (state.view === "types" && state.tick % THROUGHPUT_EVERY === 0) {
          tasks.push(loadTypes()); // paused from elsewhere (the CLI, another tab)
        }
        await Promise.allSettled(tasks);
        state.tick += 1;
      }
    } finally {
      running = false;
      if (again) {
        again = false;
        clearTimeout(timer);
        timer = setTimeout(tick, 0);
      } else {
        timer = setTimeout(tick, REFRESH_MS);
      }
    }
  }

  // ---------------------------------------------------------------- stats

  const statNodes = {};
  (function buildStats() {
    const list = $("stats");
    const items = [
      ...STATUSES.map((s) => [s, s, "stat-" + s]),
      ["total", "total", "stat-total"],
      ["completionRate", "completion rate", "stat-rate"],
      ["failureRate", "failure rate", "stat-rate"],
    ];
    for (const [key, label, cls] of items) {
      const value = el("span", { class: "stat-value", text: "–" });
      statNodes[key] = value;
      list.append(el("li", { class: "stat " + cls, dataset: { stat: key } }, el("span", { class: "stat-label", text: label }), value));
    }
  })();

  async function refreshStats() {
    const stats = await api("GET", "stats");
    for (const status of STATUSES) setText(statNodes[status], stats[status] ?? 0);
    const finished = `${stats.completed}:${stats.failed}`;
    if (state.finished !== undefined && finished !== state.finished) state.finishedChanged = true;
    state.finished = finished;
    setText(statNodes.total, stats.total ?? 0);
    setText(statNodes.completionRate, percent(stats.completionRate));
    setText(statNodes.failureRate, percent(stats.failureRate));
    setText($("stats-updated"), `updated ${clock(new Date().toISOString())}`);
    const failed = $("nav-failed-count");
    setText(failed, stats.failed || "");
    failed.hidden = !stats.failed;
  }

  // ---------------------------------------------------------------- throughput chart (inline SVG)

  const SVG_NS = "http://www.w3.org/2000/svg";
  // The y axis: TICKS gridlines at whole-number steps of 1, 2 or 5 times a power of ten.
  const TICKS = 4;
  const chart = { width: 640, height: 190, left: 34, right: 8, top: 10, bottom: 24, bars: [], labels: [], ticks: [], built: false };

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function buildChart(count) {
    const root = svg("svg", { viewBox: `0 0 ${chart.width} ${chart.height}`, role: "img", "aria-labelledby": "chart-title chart-desc" });
    const title = svg("title", { id: "chart-title" });
    title.textContent = "Completions and failures per minute, last 60 minutes";
    const desc = svg("desc", { id: "chart-desc" });
    root.append(title, desc);
    chart.desc = desc;
    chart.grid = svg("g");
    root.append(chart.grid);
    for (let i = 0; i < TICKS; i += 1) {
      const line = svg("line", { class: "grid", x1: chart.left, x2: chart.width - chart.right });
      const label = svg("text", { class: "axis-label", x: chart.left - 6, "text-anchor": "end" });
      chart.grid.append(line, label);
      chart.ticks.push({ line, label });
    }
    const plotW = chart.width - chart.left - chart.right;
    const slot = plotW / count;
    const bars = svg("g");
    for (let i = 0; i < count; i += 1) {
      const x = chart.left + i * slot + slot * 0.12;
      const w = Math.max(1, slot * 0.76);
      const group = svg("g");
      const tip = svg("title");
      const done = svg("rect", { class: "bar-completed", x, width: w, y: chart.height - chart.bottom, height: 0 });
      const fail = svg("rect", { class: "bar-failed", x, width: w, y: chart.height - chart.bottom, height: 0 });
      group.append(tip, done, fail);
      bars.append(group);
      chart.bars.push({ tip, done, fail });
    }
    root.append(bars);
    root.append(svg("line", { class: "baseline", x1: chart.left, x2: chart.width - chart.right, y1: chart.height - chart.bottom, y2: chart.height - chart.bottom }));
    for (let i = 0; i < 5; i += 1) {
      const label = svg("text", { class: "axis-label", y: chart.height - 6, "text-anchor": "middle" });
      root.append(label);
      chart.labels.push(label);
    }
    chart.slot = slot;
    chart.count = count;
    chart.built = true;
    $("chart").replaceChildren(root);
  }

  function niceMax(value) {
    const rough = Math.max(1, value / TICKS);
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= rough);
    return step * TICKS;
  }

  function minuteLabel(minute) {
    const match = /T(\d\d):(\d\d)/.exec(minute || "");
    if (!match) return "";
    const d = new Date(minute.replace(/Z$/, ":00Z"));
    return Number.isNaN(d.getTime()) ? `${match[1]}:${match[2]}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  async function refreshThroughput() {
    let data;
    try {
      data = await api("GET", "stats/throughput?minutes=60");
    } catch (err) {
      setText($("chart-summary"), `Throughput unavailable: ${err.message} (${err.code}).`);
      throw err;
    }
    const buckets = (data && data.buckets) || [];
    const signature = JSON.stringify(buckets);
    if (signature === state.lastChart) return;
    state.lastChart = signature;
    const count = Math.max(buckets.length, 1);
    if (!chart.built || chart.count !== count) {
      chart.bars = [];
      chart.labels = [];
      chart.ticks = [];
      buildChart(count);
    }
    const baseY = chart.height - chart.bottom;
    const plotH = baseY - chart.top;
    const peak = buckets.reduce((m, b) => Math.max(m, (b.completed || 0) + (b.failed || 0)), 0);
    const max = niceMax(peak);
    chart.ticks.forEach((tick, i) => {
      const value = (max * (i + 1)) / TICKS;
      const y = baseY - (plotH * (i + 1)) / TICKS;
      tick.line.setAttribute("y1", y);
      tick.line.setAttribute("y2", y);
      tick.label.setAttribute("y", y + 4);
      tick.label.textContent = Number.isInteger(value) ? String(value) : value.toFixed(1);
    });
    let completed = 0;
    let failed = 0;
    buckets.forEach((bucket, i) => {
      const bar = chart.bars[i];
      const c = bucket.completed || 0;
      const f = bucket.failed || 0;
      completed += c;
      failed += f;
      const hc = (plotH * c) / max;
      const hf = (plotH * f) / max;
      bar.done.setAttribute("y", baseY - hc);
      bar.done.setAttribute("height", hc);
      bar.fail.setAttribute("y", baseY - hc - hf);
      bar.fail.setAttribute("height", hf);
      bar.tip.textContent = `${minuteLabel(bucket.minute)}: ${c} completed, ${f} failed`;
    });
    const positions = [0, Math.round((count - 1) / 4), Math.round((count - 1) / 2), Math.round((3 * (count - 1)) / 4), count - 1];
    chart.labels.forEach((label, i) => {
      const index = positions[i];
      label.setAttribute("x", chart.left + index * chart.slot + chart.slot / 2);
      label.setAttribute("text-anchor", i === 0 ? "start" : i === positions.length - 1 ? "end" : "middle");
      label.textContent = buckets[index] ? minuteLabel(buckets[index].minute) : "";
    });
    const summary = `Last ${data.minutes || buckets.length} minutes: ${completed} completed, ${failed} failed; busiest minute ${peak}.`;
    chart.desc.textContent = summary;
    setText($("chart-summary"), summary);
  }

  // ---------------------------------------------------------------- job types and the submit form

  async function loadTypes() {
    try {
      const data = await api("GET", "types");
      state.types = (data && data.types) || [];
      state.typesLoaded = true;
    } catch (err) {
      showError($("submit-error"), err, "Could not load the job types");
      return;
    }
    $("submit-error").hidden = true;
    const names = state.types.map((t) => t.name);
    const submit = $("submit-type");
    const current = submit.value;
    submit.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
    submit.value = names.includes(current) ? current : names.includes("simulate") ? "simulate" : names[0] || "";
    for (const id of ["filter-type", "failures-type"]) {
      const select = $(id);
      const value = select.value;
      select.replaceChildren(el("option", { value: "", text: "All types" }), ...names.map((name) => el("option", { value: name, text: name })));
      select.value = names.includes(value) ? value : "";
    }
    typeChanged();
    renderTypes();
  }

  // ---------------------------------------------------------------- job types: pause and resume

  function renderTypes() {
    const rows = state.types.map((info) => {
      const paused = Boolean(info.paused);
      const button = el("button", {
        type: "button",
        class: "small",
        "aria-pressed": String(paused),
        "aria-label": `${paused ? "Resume" : "Pause"} ${info.name}`,
        text: paused ? "Resume" : "Pause",
      });
      button.addEventListener("click", () => togglePause(info.name, !paused, button));
      return el(
        "tr",
        { dataset: { type: info.name } },
        el("td", { text: info.name }),
        el("td", { class: "wrap", text: info.description || "" }),
        el("td", { dataset: { col: "state" } }, badge(paused ? "paused" : "running")),
        el("td", {}, button),
      );
    });
    $("types-table").tBodies[0].replaceChildren(...rows);
  }

  async function togglePause(name, pause, button) {
    const status = $("types-status");
    button.disabled = true;
    try {
      const answer = await api("POST", `types/${encodeURIComponent(name)}/${pause ? "pause" : "resume"}`);
      const info = typeInfo(name);
      if (info) info.paused = answer.paused;
      status.textContent = answer.paused ? `${name} is paused: its jobs wait.` : `${name} is running again.`;
    } catch (err) {
      status.textContent = `Could not ${pause ? "pause" : "resume"} ${name}: ${err.message} (${err.code}).`;
    }
    renderTypes();
  }

  function typeInfo(name) {
    return state.types.find((t) => t.name === name);
  }

  function resolveRef(schema, root) {
    let node = schema || {};
    for (let depth = 0; node && node.$ref && depth < 10; depth += 1) {
      const name = node.$ref.split("/").pop();
      node = (root.$defs || root.definitions || {})[name] || {};
    }
    return node || {};
  }

  function stringExample(name, schema) {
    if (schema.format === "email" || /email|^to$|^from$/i.test(name)) return "someone@example.com";
    if (schema.format === "uri" || /url|uri/i.test(name)) return "https://example.com/";
    if (schema.pattern && schema.pattern.startsWith("^uploads/")) return "uploads/<tenant>/<file>.png";
    if (/message|text|prompt/i.test(name)) return "Hello";
    const base = "example";
    return schema.minLength && schema.minLength > base.length ? base.padEnd(schema.minLength, "x") : base;
  }

  // An example value: the default if any, else something plausible for the type; objects get their required
  // properties and those with a (non-null) default.
  function exampleFor(schema, root, name = "", depth = 0) {
    const s = resolveRef(schema, root);
    if (depth > 6) return null;
    if ("default" in s) return s.default;
    if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
    if ("const" in s) return s.const;
    if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
    const alternatives = s.anyOf || s.oneOf;
    if (Array.isArray(alternatives) && alternatives.length) {
      const choice = alternatives.find((a) => resolveRef(a, root).type !== "null") || alternatives[0];
      return exampleFor(choice, root, name, depth + 1);
    }
    if (Array.isArray(s.allOf) && s.allOf.length) return exampleFor(s.allOf[0], root, name, depth + 1);
    const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
    switch (type) {
      case "string":
        return stringExample(name, s);
      case "integer":
        return s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : 1);
      case "number":
        return s.minimum ?? 0;
      case "boolean":
        return false;
      case "null":
        return null;
      case "array": {
        if (!s.minItems) return [];
        const item = exampleFor(s.items || {}, root, name, depth + 1);
        // Items that are free-form objects get an "id", which such lists usually key on
        const freeForm = item && typeof item === "object" && !Array.isArray(item) && !Object.keys(item).length;
        return [freeForm ? { id: 1 } : item];
      }
      default: {
        const out = {};
        const required = new Set(s.required || []);
        for (const [prop, propSchema] of Object.entries(s.properties || {})) {
          const resolved = resolveRef(propSchema, root);
          if (required.has(prop)) out[prop] = exampleFor(resolved, root, prop, depth + 1);
          else if ("default" in resolved && resolved.default !== null) out[prop] = resolved.default;
        }
        return out;
      }
    }
  }

  function describeType(schema, root, s = resolveRef(schema, root)) {
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    const alternatives = s.anyOf || s.oneOf;
    if (alternatives) return alternatives.map((a) => describeType(a, root)).join(" | ");
    return Array.isArray(s.type) ? s.type.join(" | ") : s.type || "any";
  }

  function typeChanged() {
    const info = typeInfo($("submit-type").value);
    const schema = (info && info.schema) || {};
    setText($("type-desc"), (info && info.description) || "");
    setText($("schema-hint"), pretty(schema));
    const hint = $("schema-fields");
    hint.replaceChildren();
    const required = new Set(schema.required || []);
    const props = Object.entries(schema.properties || {});
    if (props.length) {
      hint.append("Fields: ");
      props.forEach(([name, prop], i) => {
        if (i) hint.append(", ");
        hint.append(el("code", { text: name }), ` ${describeType(prop, schema)}${required.has(name) ? " (required)" : ""}`);
      });
    }
    $("submit-payload").value = info ? JSON.stringify(exampleFor(schema, schema), null, 2) : "{}";
  }

  $("submit-type").addEventListener("change", typeChanged);
  $("payload-reset").addEventListener("click", typeChanged);

  function intOption(id, label) {
    const raw = $(id).value.trim();
    if (raw === "") return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value)) throw Object.assign(new Error(`${label} must be a whole number`), { code: "INVALID_OPTION" });
    return value;
  }

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = $("submit-status");
    const errorBox = $("submit-error");
    showError(errorBox, null);
    status.replaceChildren();
    let body;
    try {
      const text = $("submit-payload").value.trim();
      let payload;
      try {
        payload = text ? JSON.parse(text) : {};
      } catch (err) {
        throw Object.assign(new Error(`the payload is not valid JSON: ${err.message}`), { code: "INVALID_JSON" });
      }
      body = { type: $("submit-type").value, payload };
      const options = { priority: intOption("opt-priority", "Priority"), maxAttempts: intOption("opt-max-attempts", "Max attempts"), timeoutSeconds: intOption("opt-timeout", "Timeout"), delaySeconds: intOption("opt-delay", "Delay") };
      for (const [name, value] of Object.entries(options)) if (value !== undefined) body[name] = value;
    } catch (err) {
      showError(errorBox, err, "Not submitted");
      return;
    }
    const button = $("submit-button");
    button.disabled = true;
    try {
      const job = await api("POST", "jobs", body);
      status.dataset.jobId = job.id;
      status.replaceChildren(
        "Enqueued ",
        el("strong", { text: job.type }),
        " job ",
        el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono", id: "submit-job-link", text: job.id }),
        " — ",
        el("span", { id: "submit-job-status" }, badge(job.status)),
      );
      followSubmitted(job.id, job.status);
      if (state.cursors.length === 1) refreshNow();
    } catch (err) {
      showError(errorBox, err, "The API refused the job");
    } finally {
      button.disabled = false;
    }
  });

  // The notice's badge follows the submitted job until it is final (or another job is submitted).
  async function followSubmitted(id, shown) {
    const status = $("submit-status");
    while (status.dataset.jobId === id && !FINAL.has(shown)) {
      await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
      if (status.dataset.jobId !== id) return;
      let job;
      try {
        job = await api("GET", `jobs/${encodeURIComponent(id)}`);
      } catch (err) {
        continue; // the connection banner says what is wrong; try again on the next tick
      }
      const holder = $("submit-job-status");
      if (status.dataset.jobId !== id || !holder) return;
      if (job.status !== shown) holder.replaceChildren(badge(job.status));
      shown = job.status;
    }
  }

  // ---------------------------------------------------------------- tables, patched by job id (no flicker)

  function syncRows(tbody, items, create, update) {
    const existing = new Map();
    for (const row of Array.from(tbody.rows)) existing.set(row.dataset.id, row);
    const wanted = new Set(items.map((item) => item.id));
    for (const [id, row] of existing) if (!wanted.has(id)) row.remove();
    let previous = null;
    for (const item of items) {
      let row = existing.get(item.id);
      if (!row) row = create(item);
      update(row, item);
      const expected = previous ? previous.nextElementSibling : tbody.firstElementChild;
      if (row !== expected) tbody.insertBefore(row, expected);
      previous = row;
    }
  }

  function jobLink(job) {
    return el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono job-link", title: job.id, "aria-label": `Job ${job.id}`, text: shortId(job.id) });
  }

  // The cells every job table starts with (status, id, type, attempts); the columns after them are the table's own.
  function jobCells(job) {
    return [
      el("td", { dataset: { col: "status" } }, badge(job.status)),
      el("td", {}, jobLink(job)),
      el("td", { dataset: { col: "type" } }),
      el("td", { class: "num", dataset: { col: "attempts" } }),
    ];
  }

  function createJobRow(job) {
    return el(
      "tr",
      { dataset: { id: job.id } },
      ...jobCells(job),
      el("td", { class: "num", dataset: { col: "priority" } }),
      el("td", { class: "time", dataset: { col: "created" } }),
      el("td", { class: "time", dataset: { col: "updated" } }),
      el("td", { class: "err", dataset: { col: "error" } }),
    );
  }

  function updateJobRow(row, job) {
    const cell = (name) => row.querySelector(`[data-col="${name}"]`);
    setBadge(cell("status").firstElementChild, job.status);
    setText(cell("type"), job.type);
    setText(cell("attempts"), `${job.attempts ?? 0} / ${job.maxAttempts ?? "?"}`);
    setText(cell("priority"), job.priority ?? "");
    setText(cell("created"), clock(job.createdAt));
    setText(cell("updated"), clock(job.updatedAt));
    const err = cell("error");
    setText(err, job.error || "");
    if ((err.title || "") !== (job.error || "")) err.title = job.error || "";
  }

  function jobsQuery(status, type, limit, cursor) {
    const params = new URLSearchParams();
    if (status) params.set("status", status);
    if (type) params.set("type", type);
    params.set("limit", String(limit));
    if (cursor) params.set("cursor", cursor);
    return `jobs?${params}`;
  }

  async function refreshJobs() {
    const seq = ++state.jobsSeq;
    let cursor = state.cursors[state.cursors.length - 1];
    // The API may answer a page short, even empty, with a cursor (a request examines a bounded number of index
    // entries, and pending, processing and retrying share theirs): read on, a few requests at most, to fill it.
    const jobs = [];
    for (let request = 0; request < FILL_REQUESTS; request += 1) {
      const query = jobsQuery(state.filters.status, state.filters.type, PAGE_SIZE - jobs.length, cursor);
      const page = await api("GET", query);
      if (seq !== state.jobsSeq) return; // the filters or the page changed meanwhile
      jobs.push(...((page && page.jobs) || []));
      cursor = (page && page.nextCursor) || null;
      if (!cursor || jobs.length >= PAGE_SIZE) break;
    }
    syncRows($("jobs-table").tBodies[0], jobs, createJobRow, updateJobRow);
    $("jobs-empty").hidden = jobs.length > 0;
    const readOn = "No matching jobs among the newest read so far; Next reads further.";
    setText($("jobs-empty"), cursor ? readOn : "No jobs match these filters.");
    state.nextCursor = cursor;
    $("next-page").disabled = !state.nextCursor;
    $("prev-page").disabled = state.cursors.length <= 1;
    setText($("page-info"), `Page ${state.cursors.length}`);
  }

  (function buildFilters() {
    const select = $("filter-status");
    select.append(el("option", { value: "", text: "All statuses" }), ...STATUSES.map((s) => el("option", { value: s, text: s })));
  })();

  function filtersChanged() {
    state.filters.status = $("filter-status").value;
    state.filters.type = $("filter-type").value;
    state.cursors = [null];
    state.jobsSeq += 1;
    refreshNow();
  }
  $("filter-status").addEventListener("change", filtersChanged);
  $("filter-type").addEventListener("change", filtersChanged);
  $("next-page").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    state.jobsSeq += 1;
    refreshNow();
  });
  $("prev-page").addEventListener("click", () => {
    if (state.cursors.length <= 1) return;
    state.cursors.pop();
    state.jobsSeq += 1;
    refreshNow();
  });

  // ---------------------------------------------------------------- job detail and its timeline

  const SUMMARY_FIELDS = [
    ["type", "Type", (j) => j.type],
    ["attempts", "Attempts", (j) => `${j.attempts ?? 0} of ${j.maxAttempts ?? "?"}`],
    ["priority", "Priority", (j) => j.priority],
    ["timeoutSeconds", "Timeout per attempt", (j) => (j.timeoutSeconds != null ? `${j.timeoutSeconds} s` : "—")],
    ["createdAt", "Created", (j) => dateTime(j.createdAt)],
    ["runAt", "Runs at", (j) => dateTime(j.runAt)],
    ["startedAt", "Started (latest attempt)", (j) => dateTime(j.startedAt)],
    ["completedAt", "Finished", (j) => dateTime(j.completedAt)],
    ["updatedAt", "Updated", (j) => dateTime(j.updatedAt)],
    ["progress", "Progress", (j) => (j.progress && typeof j.progress === "object" ? `${Math.round(j.progress.percent ?? 0)} % ${j.progress.message || ""}` : j.progress ?? "—")],
    ["groupId", "Ordered group", (j) => j.groupId],
    ["batchId", "Batch", (j) => j.batchId],
    ["callback", "Callback", (j) => (j.callback ? `${j.callback.status || "when final"} · ${j.callback.url}${j.callback.attempts ? ` · ${j.callback.attempts} attempt(s)` : ""}${j.callback.lastError ? ` · ${j.callback.lastError}` : ""}` : "—")],
    ["error", "Last error", (j) => j.error || "—"],
  ];
  // Shown only when the job has them (flow-control options).
  const OPTIONAL_FIELDS = new Set(["timeoutSeconds", "progress", "groupId", "batchId", "callback"]);
  const summaryNodes = {};
  (function buildSummary() {
    const dl = $("detail-summary");
    for (const [key, label] of SUMMARY_FIELDS) {
      const dd = el("dd", { dataset: { field: key } });
      summaryNodes[key] = dd;
      dl.append(el("div", {}, el("dt", { text: label }), dd));
    }
  })();

  function resetDetail(id) {
    state.detailRendered = { id, count: 0 };
    $("timeline").replaceChildren();
    setText($("detail-id"), id);
    setBadge($("detail-status"), "");
    setText($("detail-payload"), "");
    setText($("detail-result"), "");
    $("action-status").replaceChildren();
    $("result-file").hidden = true;
    $("result-preview").hidden = true;
    $("result-preview").removeAttribute("src");
    showError($("detail-error"), null);
    for (const id2 of ["action-cancel", "action-retry", "action-result"]) $(id2).disabled = true;
  }

  async function refreshDetail() {
    const id = state.detailId;
    if (!id) return;
    let job;
    try {
      job = await api("GET", `jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      if (id === state.detailId) showError($("detail-error"), err, "Could not load the job");
      throw err;
    }
    if (id !== state.detailId) return;
    showError($("detail-error"), null);
    renderDetail(job);
  }

  function renderDetail(job) {
    if (state.detailRendered.id !== job.id) resetDetail(job.id);
    setBadge($("detail-status"), job.status);
    for (const [key, , format] of SUMMARY_FIELDS) {
      const dd = summaryNodes[key];
      const visible = !OPTIONAL_FIELDS.has(key) || (job[key] !== undefined && job[key] !== null);
      dd.parentElement.hidden = !visible;
      if (visible) setText(dd, format(job) ?? "—");
    }
    setText($("detail-payload"), pretty(job.payload));
    setText($("detail-result"), job.result === null || job.result === undefined ? "(no result yet)" : pretty(job.result));
    $("action-cancel").disabled = !CANCELLABLE.has(job.status);
    $("action-retry").disabled = !RETRYABLE.has(job.status);
    $("action-result").disabled = job.status !== "completed";
    if (job.status !== "completed") $("result-file").hidden = true;
    renderTimeline(job);
    if (window.JobsDependencies) window.JobsDependencies.render(job, api).catch(() => {}); // dependencies.js
  }

  // History is append-only: render only the entries not drawn yet (a retried job keeps its history and grows).
  function renderTimeline(job) {
    const history = job.history || [];
    const list = $("timeline");
    const rendered = state.detailRendered;
    if (history.length < rendered.count) {
      list.replaceChildren();
      rendered.count = 0;
    }
    const origin = history.length ? new Date(history[0].at).getTime() : 0;
    for (let i = rendered.count; i < history.length; i += 1) {
      const entry = history[i];
      const previous = history[i - 1];
      const at = new Date(entry.at).getTime();
      if (previous && previous.status === "retrying" && entry.status === "processing") {
        const waited = at - new Date(previous.at).getTime();
        list.append(el("li", { class: "tl-gap" }, el("span", { class: "tl-gap-label", text: `waited ${seconds(waited)}` }), el("span", { class: "visually-hidden", text: " (retry backoff)" })));
      }
      const line = el(
        "div",
        { class: "tl-line" },
        badge(entry.status),
        entry.attempt !== undefined && entry.attempt !== null ? el("span", { class: "tl-attempt", title: `attempt ${entry.attempt}`, text: `#${entry.attempt}` }) : null,
        el("time", { datetime: entry.at, title: entry.at, text: clock(entry.at, true) }),
        el("span", { class: "tl-offset", text: i === 0 ? "" : `+${seconds(at - origin)}` }),
      );
      const item = el("li", { class: "tl-entry", dataset: { status: entry.status, index: String(i) } }, line);
      if (entry.error) item.append(el("p", { class: "tl-error", text: entry.error }));
      list.append(item);
    }
    rendered.count = history.length;
  }

  async function detailAction(kind) {
    const id = state.detailId;
    const status = $("action-status");
    showError($("detail-error"), null);
    try {
      if (kind === "cancel") {
        const job = await api("DELETE", `jobs/${encodeURIComponent(id)}`);
        status.textContent = `Cancelled: the job is now ${job.status}.`;
        renderDetail(job);
      } else if (kind === "retry") {
        const job = await api("POST", `jobs/${encodeURIComponent(id)}/retry`);
        status.textContent = `Retry requested: the job is now ${job.status}.`;
        renderDetail(job);
      } else {
        const result = await api("GET", `jobs/${encodeURIComponent(id)}/result`);
        if (result && result.url) {
          const link = $("result-link");
          link.href = result.url;
          setText(link, `Download ${result.key ? result.key.split("/").pop() : "result"}`);
          setText($("result-expiry"), result.expiresAt ? `link valid until ${dateTime(result.expiresAt)}` : "");
          const preview = $("result-preview");
          const isImage = /^image\//.test(result.contentType || "") || /\.(png|jpe?g)$/i.test(result.key || "");
          preview.hidden = !isImage;
          if (isImage) preview.src = result.url;
          $("result-file").hidden = false;
          status.textContent = "The result's download link is ready.";
          link.focus();
        } else {
          status.textContent = "This job's result is not a file; it is shown under Result.";
        }
      }
    } catch (err) {
      showError($("detail-error"), err, kind === "result" ? "No download" : `Could not ${kind} the job`);
    }
    refreshNow();
  }
  $("action-cancel").addEventListener("click", () => detailAction("cancel"));
  $("action-retry").addEventListener("click", () => detailAction("retry"));
  $("action-result").addEventListener("click", () => detailAction("result"));

  // ---------------------------------------------------------------- failures

  function createFailureRow(job) {
    const button = el("button", { type: "button", class: "small", "aria-label": `Retry job ${job.id}`, text: "Retry" });
    button.addEventListener("click", () => retryOne(job.id, button));
    return el(
      "tr",
      { dataset: { id: job.id } },
      ...jobCells(job),
      el("td", { class: "time", dataset: { col: "updated" } }),
      el("td", { class: "err wrap", dataset: { col: "error" } }),
      el("td", {}, button),
    );
  }

  function updateFailureRow(row, job) {
    const cell = (name) => row.querySelector(`[data-col="${name}"]`);
    setBadge(cell("status").firstElementChild, job.status);
    setText(cell("type"), job.type);
    setText(cell("attempts"), `${job.attempts ?? 0} / ${job.maxAttempts ?? "?"}`);
    setText(cell("updated"), dateTime(job.completedAt || job.updatedAt));
    setText(cell("error"), job.error || "");
    cell("error").title = job.error || "";
    row.querySelector("button").disabled = job.status !== "failed" || state.bulkBusy;
  }

  async function refreshFailures() {
    const seq = ++state.failuresSeq;
    const type = $("failures-type").value;
    const page = await api("GET", jobsQuery("failed", type, 100, null));
    if (seq !== state.failuresSeq) return;
    const jobs = (page && page.jobs) || [];
    syncRows($("failures-table").tBodies[0], jobs, createFailureRow, updateFailureRow);
    $("failures-empty").hidden = jobs.length > 0;
    const more = $("failures-more");
    more.hidden = !page.nextCursor;
    setText(more, page.nextCursor ? "Showing the newest 100; “Retry all matching” retries every failed job of this type." : "");
    $("retry-all").disabled = state.bulkBusy || jobs.length === 0;
  }

  async function retryOne(id, button) {
    const status = $("failures-status");
    button.disabled = true;
    try {
      const job = await api("POST", `jobs/${encodeURIComponent(id)}/retry`);
      const row = $("failures-table").querySelector(`tr[data-id="${CSS.escape(id)}"]`);
      if (row) updateFailureRow(row, job);
      status.textContent = `Job ${shortId(id)} retried: now ${job.status}.`;
    } catch (err) {
      status.textContent = `Could not retry job ${shortId(id)}: ${err.message} (${err.code}).`;
      button.disabled = false;
    }
  }

  $("failures-type").addEventListener("change", () => {
    state.failuresSeq += 1;
    $("failures-table").tBodies[0].replaceChildren();
    refreshNow();
  });

  $("retry-all").addEventListener("click", async () => {
    const status = $("failures-status");
    const type = $("failures-type").value;
    state.bulkBusy = true;
    $("retry-all").disabled = true;
    try {
      status.textContent = "Collecting the failed jobs…";
      const ids = [];
      let cursor = null;
      do {
        const page = await api("GET", jobsQuery("failed", type, 100, cursor));
        for (const job of page.jobs || []) ids.push(job.id);
        cursor = page.nextCursor || null;
      } while (cursor);
      let done = 0;
      let errors = 0;
      for (const id of ids) {
        try {
          await api("POST", `jobs/${encodeURIComponent(id)}/retry`);
        } catch (err) {
          errors += 1;
          if (err.code === "NETWORK" || err.status === 403) throw err;
        }
        done += 1;
        status.textContent = `Retrying ${done} of ${ids.length}…`;
      }
      status.textContent = `Retried ${ids.length - errors} of ${ids.length} failed ${type || ""} job${ids.length === 1 ? "" : "s"}${errors ? `; ${errors} could not be retried (their status changed)` : ""}.`;
    } catch (err) {
      status.textContent = `Bulk retry stopped: ${err.message} (${err.code}).`;
    } finally {
      state.bulkBusy = false;
      refreshNow();
    }
  });

  $("cancel-all").addEventListener("click", async () => {
    const status = $("failures-status");
    const type = $("failures-type").value;
    state.bulkBusy = true;
    $("cancel-all").disabled = true;
    try {
      status.textContent = "Cancelling…";
      let cancelled = 0;
      let answer;
      do {
        answer = await api("POST", "jobs/cancel", type ? { type } : {});
        cancelled += answer.cancelled || 0;
      } while (answer.more);
      status.textContent = `Cancelled ${cancelled} waiting ${type ? `${type} ` : ""}job${cancelled === 1 ? "" : "s"}.`;
    } catch (err) {
      status.textContent = `Bulk cancel stopped: ${err.message} (${err.code}).`;
    } finally {
      state.bulkBusy = false;
      $("cancel-all").disabled = false;
      refreshNow();
    }
  });

  // ---------------------------------------------------------------- image flow

  const image = { jobId: null, watch: null };

  function imageStep(text, done) {
    const steps = $("image-steps");
    const last = steps.lastElementChild;
    if (last && !last.classList.contains("done")) last.classList.add("done");
    steps.append(el("li", { class: done ? "done" : "", text }));
  }

  $("image-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("image-file").files[0];
    const errorBox = $("image-error");
    showError(errorBox, null);
    $("image-steps").replaceChildren();
    $("image-output").hidden = true;
    $("image-job").hidden = true;
    clearTimeout(image.watch);
    if (!file) {
      showError(errorBox, Object.assign(new Error("choose a PNG or JPEG file first"), { code: "NO_FILE" }));
      $("image-file").focus();
      return;
    }
    if (!["image/png", "image/jpeg"].includes(file.type)) {
      showError(errorBox, Object.assign(new Error(`only PNG and JPEG files can be processed, not ${file.type || "this file"}`), { code: "INVALID_UPLOAD" }));
      return;
    }
    const button = $("image-submit");
    button.disabled = true;
    try {
      imageStep("Asking for an upload URL…");
      const upload = await api("POST", "uploads", { contentType: file.type, size: file.size });
      imageStep(`Uploading ${file.name} (${file.size.toLocaleString()} bytes)…`);
      const headers = {};
      for (const [name, value] of Object.entries(upload.headers || {})) {
        if (name.toLowerCase() !== "content-length") headers[name] = value; // the browser sets Content-Length itself
      }
      let put;
      try {
        put = await fetch(upload.uploadUrl, { method: upload.method || "PUT", headers, body: file });
      } catch (err) {
        throw Object.assign(new Error(`the upload did not reach storage (${err.message})`), { code: "UPLOAD_FAILED" });
      }
      if (!put.ok) throw Object.assign(new Error(`storage refused the upload (HTTP ${put.status})`), { code: "UPLOAD_FAILED" });
      $("image-original").src = URL.createObjectURL(file);
      imageStep("Uploaded. Enqueuing an image-grayscale job…");
      const job = await api("POST", "jobs", { type: "image-grayscale", payload: { key: upload.key } });
      image.jobId = job.id;
      const link = $("image-job-link");
      link.href = `#/jobs/${encodeURIComponent(job.id)}`;
      setText(link, job.id);
      setBadge($("image-status"), job.status);
      $("image-job").hidden = false;
      imageStep("Watching the job…");
      watchImage(job.id);
    } catch (err) {
      showError(errorBox, err, "Image flow stopped");
    } finally {
      button.disabled = false;
    }
  });

  async function watchImage(id) {
    if (id !== image.jobId) return;
    let job;
    try {
      job = await api("GET", `jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.code === "NETWORK" || err.status >= 500) image.watch = setTimeout(() => watchImage(id), 1000);
      else showError($("image-error"), err, "Could not watch the job");
      return;
    }
    setBadge($("image-status"), job.status);
    if (!FINAL.has(job.status)) {
      image.watch = setTimeout(() => watchImage(id), 700);
      return;
    }
    if (job.status !== "completed") {
      showError($("image-error"), Object.assign(new Error(job.error || `the job ended ${job.status}`), { code: job.status.toUpperCase() }), "The job did not complete");
      return;
    }
    try {
      const result = await api("GET", `jobs/${encodeURIComponent(id)}/result`);
      if (!result.url) throw Object.assign(new Error("the result names no file"), { code: "NO_FILE" });
      imageStep("Done: the grayscale image is ready.", true);
      $("image-preview").src = result.url;
      $("image-download").href = result.url;
      $("image-output").hidden = false;
    } catch (err) {
      showError($("image-error"), err, "No result");
    }
  }

  // ---------------------------------------------------------------- routing (#/, #/failures, #/types, #/image, #/jobs/<id>)

  function route(moveFocus) {
    const hash = location.hash || "#/";
    if (!hash.startsWith("#/")) return; // e.g. the skip link
    const match = /^#\/jobs\/([^/?]+)$/.exec(hash);
    let view = "overview";
    if (match) view = "detail";
    else if (hash === "#/failures") view = "failures";
    else if (hash === "#/image") view = "image";
    else if (hash === "#/types") view = "types";
    else if (hash === "#/schedules") view = "schedules"; // schedules.js keeps that page
    state.view = view;
    for (const name of ["overview", "detail", "failures", "image", "types", "schedules"]) $(`view-${name}`).hidden = name !== view;
    document.querySelectorAll("[data-nav]").forEach((link) => {
      const current = link.dataset.nav === view || (view === "detail" && link.dataset.nav === "overview");
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    if (view === "detail") {
      const id = decodeURIComponent(match[1]);
      if (id !== state.detailId) {
        state.detailId = id;
        resetDetail(id);
      }
      document.title = `Job ${shortId(id)} · Jobs dashboard`;
    } else {
      state.detailId = null;
      document.title = "Jobs dashboard";
    }
    if (moveFocus) {
      const heading = { overview: "overview-h", detail: "detail-h", failures: "failures-h", image: "image-h", types: "types-h", schedules: "schedules-h" }[view];
      $(heading).focus({ preventScroll: false });
    }
    refreshNow();
  }
  window.addEventListener("hashchange", () => route(true));

  // ---------------------------------------------------------------- start

  route(false);
  state.key = localStorage.getItem(KEY_STORAGE) || "";
  if (state.key) connected();
  else askForKey("");
})();
