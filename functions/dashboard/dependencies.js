/* Jobs dashboard: a job's dependencies (dependsOn) in the job view. Loaded before app.js, which calls
   JobsDependencies.render(job, api) each time it draws a job: the card lists every job this one waits for, each a
   link to its own view with its status, and says how many are not completed yet (waitingOn). */
(() => {
  "use strict";

  const REREAD_MS = 3000; // a dependency's status is read again at most this often while the view is open
  const SHOWN_STATUSES = 25; // statuses read per draw at most (a job may name 100 dependencies)
  const statuses = new Map(); // dependency id -> { status, at }

  const $ = (id) => document.getElementById(id);

  function link(id) {
    const a = document.createElement("a");
    a.href = `#/jobs/${encodeURIComponent(id)}`;
    a.className = "mono job-link";
    a.title = id;
    a.textContent = id.slice(0, 8);
    a.setAttribute("aria-label", `Dependency ${id}`);
    return a;
  }

  function badge(status) {
    const span = document.createElement("span");
    span.className = "badge" + (status ? " s-" + status : "");
    span.dataset.status = status || "";
    span.textContent = status || "";
    return span;
  }

  async function readStatuses(ids, api) {
    const now = Date.now();
    const stale = ids.filter((id) => !statuses.has(id) || now - statuses.get(id).at > REREAD_MS).slice(0, SHOWN_STATUSES);
    await Promise.all(
      stale.map(async (id) => {
        try {
          const job = await api("GET", `jobs/${encodeURIComponent(id)}`);
          statuses.set(id, { status: job.status, at: Date.now() });
        } catch (err) {
          statuses.set(id, { status: "", at: Date.now() }); // expired or unreadable: the link stays
        }
      }),
    );
  }

  function summary(job) {
    const total = job.dependsOn.length;
    const left = job.waitingOn ?? 0;
    if (job.status === "waiting") return `Waiting on ${left} of ${total} ${total === 1 ? "dependency" : "dependencies"}`;
    if (left === 0) return `All ${total} ${total === 1 ? "dependency" : "dependencies"} completed`;
    return `${left} of ${total} not completed`;
  }

  async function render(job, api) {
    const card = $("detail-dependencies");
    if (!card) return;
    const ids = Array.isArray(job.dependsOn) ? job.dependsOn : [];
    card.hidden = ids.length === 0;
    if (!ids.length) return;
    const text = summary(job);
    const heading = $("dependencies-summary");
    if (heading.textContent !== text) heading.textContent = text;
    const list = $("dependencies-list");
    const drawn = list.dataset.job === job.id && list.children.length === ids.length;
    if (!drawn) {
      list.dataset.job = job.id;
      list.replaceChildren(
        ...ids.map((id) => {
          const item = document.createElement("li");
          item.dataset.id = id;
          item.append(link(id), " ", badge(""));
          return item;
        }),
      );
    }
    await readStatuses(ids, api);
    for (const item of Array.from(list.children)) {
      const known = statuses.get(item.dataset.id);
      const node = item.querySelector(".badge");
      const status = known ? known.status : "";
      if (node.dataset.status !== status) node.replaceWith(badge(status));
    }
  }

  window.JobsDependencies = { render };
})();
