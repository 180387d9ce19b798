/* Jobs dashboard: what the tenant's jobs cost per type over the last day (GET /stats/cost?minutes=1440).
   app.js calls window.JobsCost.refresh(api) on its throughput ticks; this file reads at most once a minute (a day
   is 1,440 minutes of sums) and renders the "Cost per type" card of the overview. */
(() => {
  "use strict";

  const EVERY_MS = 60_000;
  const MINUTES = 1440;
  let last = 0;
  let pending = null;

  function dollars(usd) {
    if (usd === 0) return "$0";
    if (usd < 0.01) return `$${usd.toPrecision(3)}`;
    return `$${usd.toFixed(2)}`;
  }

  function cell(text, numeric) {
    const td = document.createElement("td");
    td.textContent = text;
    if (numeric) td.className = "num";
    return td;
  }

  function render(report) {
    const body = document.querySelector("#cost-table tbody");
    const empty = document.getElementById("cost-empty");
    const total = document.getElementById("cost-total");
    if (!body || !empty || !total) return;
    const rows = Object.entries(report.types || {}).map(([type, sums]) => {
      const tr = document.createElement("tr");
      tr.dataset.type = type;
      const perMillion = sums.jobs ? (sums.usd / sums.jobs) * 1e6 : 0;
      tr.append(
        cell(type, false),
        cell(String(sums.jobs), true),
        cell(dollars(sums.usd), true),
        cell(`${dollars(perMillion)}/M`, true),
        cell(String(Math.round(sums.requests)), true),
        cell(sums.writeUnits.toFixed(1), true),
        cell(sums.readUnits.toFixed(1), true),
        cell(`${Math.round(sums.lambdaMs)} ms`, true),
      );
      return tr;
    });
    body.replaceChildren(...rows);
    empty.hidden = rows.length > 0;
    const t = report.total || { jobs: 0, usd: 0 };
    total.textContent = t.jobs
      ? `${t.jobs} jobs since ${report.since}: ${dollars(t.usd)} (${dollars((t.usd / t.jobs) * 1e6)} per million)`
      : "";
  }

  async function refresh(api, force) {
    if (pending) return pending;
    if (Date.now() - last < (force ? 5000 : EVERY_MS)) return undefined;
    pending = (async () => {
      try {
        render(await api("GET", `stats/cost?minutes=${MINUTES}`));
        last = Date.now();
      } catch {
        /* app.js shows the connection state; the card keeps its last figures */
      } finally {
        pending = null;
      }
    })();
    return pending;
  }

  window.JobsCost = { refresh };
})();
