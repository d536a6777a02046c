// The media-nommer dashboard: every page renders from the REST API first,
// then follows the event stream (GET /v1/events) for live changes. No
// polling, no third-party code. Every value from the API is escaped.
"use strict";

const TERMINAL = ["FINISHED", "ERROR", "ABANDONED", "CANCELED"];
const STATES = ["PENDING", "DOWNLOADING", "ENCODING", "UPLOADING", "FINISHED", "ERROR", "CANCELED", "ABANDONED"];
const session = { role: "admin", name: null, csrf: null, tokens: false };
let stream = null;       // the current page's EventSource
let pageId = 0;          // bumped on each navigation: late answers are dropped

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $("#view");
const canAct = () => session.role !== "read";
const canSeeFleet = () => session.role !== "submit";
const pill = (state) => `<span class="pill ${esc(state)}" data-state="${esc(state)}">${esc(state)}</span>`;

function when(text) {
  if (!text) return "";
  const t = new Date(text);
  const secs = Math.round((Date.now() - t.getTime()) / 1000);
  if (secs < -1) return `<span title="${esc(t.toISOString())}">in ${esc(-secs < 90 ? `${-secs} s` : `${Math.round(-secs / 60)} min`)}</span>`;
  const rel = secs < 5 ? "just now" : secs < 90 ? `${secs} s ago` : secs < 5400 ? `${Math.round(secs / 60)} min ago` : secs < 129600 ? `${Math.round(secs / 3600)} h ago` : `${Math.round(secs / 86400)} d ago`;
  return `<span title="${esc(t.toISOString())}">${esc(rel)}</span>`;
}

function bar(job) {
  const p = job.progress;
  const done = job.state === "FINISHED";
  const pct = done ? 100 : p ? Math.max(0, Math.min(100, p.percent || 0)) : 0;
  const label = done ? "" : p ? `${esc(p.phase)} ${pct.toFixed(0)}%${Number(p.speed) ? ` · ${Number(p.speed).toFixed(1)}×` : ""}` : "";
  return `<div class="bar ${done ? "done" : ""}" data-progress="${pct.toFixed(0)}"><span style="width:${pct}%"></span></div><div class="muted" style="font-size:11.5px">${label}</div>`;
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 2600);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error_code;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (response.status === 401 && session.tokens) { signIn(); throw new ApiError(401, data); }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ---- session ----

async function loadSession() {
  const s = await api("GET", "/ui/session");
  Object.assign(session, { role: s.role, name: s.name, csrf: s.csrf, tokens: s.tokens_required });
  return s.signed_in || !s.tokens_required;
}

function signIn(message) {
  closeStream();
  $("#nav").style.display = "none";
  view().innerHTML = `
    <div class="card signin">
      <h1>Sign in</h1>
      <p>This feederd requires an API token. It is kept in a session cookie that page scripts cannot read.</p>
      <form id="signin-form">
        <input type="password" id="token" name="token" placeholder="API token" autocomplete="current-password" required>
        <button class="primary" type="submit" id="signin-button">Sign in</button>
        <div class="error-text" id="signin-error">${esc(message || "")}</div>
      </form>
    </div>`;
  $("#signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/ui/session", { token: $("#token").value });
      await start();
    } catch (err) {
      $("#signin-error").textContent = err.status === 401 ? "That token is not valid." : err.message;
    }
  });
}

async function signOut() {
  await api("DELETE", "/ui/session");
  location.hash = "";
  await start();
}

function renderWho() {
  const who = $("#whoami");
  if (!session.tokens) { who.innerHTML = `Open access <span class="muted">(no tokens)</span>`; return; }
  who.innerHTML = `Signed in as <b>${esc(session.name)}</b> · ${esc(session.role)}<br><button id="signout">Sign out</button>`;
  $("#signout").onclick = signOut;
}

// ---- the event stream ----

function closeStream() {
  if (stream) { stream.close(); stream = null; }
  $("#live").classList.remove("on");
  $("#live-text").textContent = "not live";
}

function follow(path, handlers) {
  closeStream();
  const source = new EventSource(path, { withCredentials: true });
  stream = source;
  source.onopen = () => { $("#live").classList.add("on"); $("#live-text").textContent = "live"; };
  source.onerror = () => { $("#live").classList.remove("on"); $("#live-text").textContent = "reconnecting"; };
  source.addEventListener("state", (e) => handlers.state && handlers.state(JSON.parse(e.data)));
  source.addEventListener("progress", (e) => handlers.progress && handlers.progress(JSON.parse(e.data)));
}

/// Calls `fn` at most once per `ms`, the last call winning.
function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// ---- pages ----

async function summaryPage(id) {
  const s = await api("GET", "/v1/summary");
  if (id !== pageId) return;
  const jobs = s.jobs || {};
  const running = ["DOWNLOADING", "ENCODING", "UPLOADING"].reduce((n, k) => n + (jobs[k] || 0), 0);
  const stat = (label, value, note) => `<div class="card stat"><div class="label">${esc(label)}</div><div class="value">${esc(value)}</div><div class="note">${esc(note || "")}</div></div>`;
  const fmt = (x, unit) => (x === null || x === undefined ? "—" : `${Number(x).toFixed(x < 10 ? 1 : 0)}${unit}`);
  view().innerHTML = `
    <h1>Summary</h1><div class="sub">The whole cluster, from the store${s.leader ? " · this replica leads" : ""}.</div>
    <div class="grid" id="stats">
      ${stat("Pending", jobs.PENDING || 0, "waiting for a worker")}
      ${stat("Running", running, "downloading, encoding, uploading")}
      ${stat("Finished", jobs.FINISHED || 0, `${jobs.ERROR || 0} error · ${jobs.CANCELED || 0} canceled`)}
      ${stat("Throughput", `${s.last_hour.finished}/h`, "jobs finished in the last hour")}
      ${stat("Encode speed", fmt(s.last_hour.encode_speed_median, "×"), "median, × real time")}
      ${stat("Queue wait", fmt(s.last_hour.queue_wait_median_s, " s"), "median, submit to first lease")}
    </div>
    <div class="two">
      <div class="card"><h2>Queues</h2>${queuesTable(s.queues)}</div>
      <div class="card"><h2>Background loops</h2>${loopsTable(s.loops)}</div>
    </div>
    <div class="card"><h2>Jobs by state</h2><table><tr>${STATES.map((st) => `<th>${esc(st)}</th>`).join("")}</tr><tr>${STATES.map((st) => `<td><a href="#/jobs?state=${st}">${esc(jobs[st] || 0)}</a></td>`).join("")}</tr></table></div>`;
  bindQueueButtons(id);
  const again = debounce(() => { if (id === pageId) summaryPage(id); }, 800);
  if (!stream) follow("/v1/events", { state: again });
  else stream.addEventListener("state", again, { once: true });
}

function queuesTable(queues) {
  if (!queues || !queues.length) return `<div class="empty">No queues.</div>`;
  return `<table><tr><th>Queue</th><th>Pending</th><th>Running</th><th>Limit</th><th>State</th><th></th></tr>${queues.map((q) => `
    <tr data-queue="${esc(q.name)}"><td class="mono">${esc(q.name)}</td><td>${esc(q.pending)}</td><td>${esc(q.running)}</td><td>${esc(q.max_concurrency ?? "—")}</td>
    <td>${q.paused ? pill("paused") : pill("active")}</td>
    <td>${session.role === "admin" ? `<button data-queue-action="${q.paused ? "resume" : "pause"}" data-name="${esc(q.name)}">${q.paused ? "Resume" : "Pause"}</button>` : ""}</td></tr>`).join("")}</table>`;
}

function bindQueueButtons(id) {
  view().querySelectorAll("[data-queue-action]").forEach((b) => {
    b.onclick = async () => {
      b.disabled = true;
      try {
        await api("POST", `/v1/queues/${encodeURIComponent(b.dataset.name)}/${b.dataset.queueAction}`);
        toast(`Queue ${b.dataset.name} ${b.dataset.queueAction === "pause" ? "paused" : "resumed"}`);
        if (id === pageId) summaryPage(id);
      } catch (err) { toast(err.message); b.disabled = false; }
    };
  });
}

function loopsTable(loops) {
  if (!loops || !loops.length) return `<div class="empty">No loops.</div>`;
  return `<table><tr><th>Loop</th><th>State</th><th>Last run</th><th>Next run</th><th>Last error</th></tr>${loops.map((l) => `
    <tr><td class="mono">${esc(l.name)}</td><td>${pill(l.phase)}</td><td>${when(l.last_run_at)}</td><td>${when(l.next_run_at)}</td>
    <td>${l.last_error ? `<span title="${esc(l.last_error)}">${esc(l.last_error.slice(0, 60))}</span> ${when(l.last_error_at)}` : `<span class="muted">none</span>`}</td></tr>`).join("")}</table>`;
}

function jobRow(job) {
  const act = canAct() && !TERMINAL.includes(job.state)
    ? `<button class="danger" data-cancel="${esc(job.id)}">Cancel</button>` : "";
  return `<tr data-job="${esc(job.id)}">
    <td class="mono"><a href="#/jobs/${esc(job.id)}">${esc(job.id.slice(0, 18))}…</a></td>
    <td class="state">${pill(job.state)}</td>
    <td class="progress">${bar(job)}</td>
    <td>${esc(job.queue)}${job.priority ? ` <span class="pill light">p${esc(job.priority)}</span>` : ""}</td>
    <td class="mono" title="${esc(job.source_path)} → ${esc(job.dest_path)}">${esc(shortUri(job.dest_path))}</td>
    <td>${esc(job.submitted_by || "")}</td>
    <td>${when(job.created_at)}</td>
    <td class="actions">${act}</td></tr>`;
}

function shortUri(uri) {
  const s = String(uri || "");
  return s.length > 48 ? `…${s.slice(-46)}` : s;
}

function bindCancel(root, after) {
  root.querySelectorAll("[data-cancel]").forEach((b) => {
    b.onclick = async () => {
      b.disabled = true;
      try {
        const job = await api("POST", `/v1/jobs/${encodeURIComponent(b.dataset.cancel)}/cancel`);
        toast(`Cancel requested: ${job.state}`);
        after && after(job);
      } catch (err) { toast(err.message); b.disabled = false; }
    };
  });
}

async function jobsPage(id, params) {
  const filter = params.get("state") || "";
  const list = await api("GET", `/v1/jobs?limit=100${filter ? `&state=${encodeURIComponent(filter)}` : ""}`);
  if (id !== pageId) return;
  const chips = ["", ...STATES].map((st) => `<span class="chip ${st === filter ? "on" : ""}" data-filter="${st}">${st || "All"}</span>`).join("");
  view().innerHTML = `
    <h1>Jobs</h1><div class="sub">Newest first; states and progress update live.</div>
    <div class="toolbar">${chips}
      <form id="find" style="margin-left:auto;display:flex;gap:6px"><input type="text" id="find-id" placeholder="Find a job by id"><button>Open</button></form></div>
    <div class="card" style="padding:4px 8px"><table id="jobs"><thead><tr><th>Job</th><th>State</th><th>Progress</th><th>Queue</th><th>Destination</th><th>By</th><th>Submitted</th><th></th></tr></thead>
    <tbody>${list.jobs.map(jobRow).join("")}</tbody></table>${list.jobs.length ? "" : `<div class="empty" id="no-jobs">No jobs${filter ? ` in ${esc(filter)}` : ""}.</div>`}</div>`;
  view().querySelectorAll("[data-filter]").forEach((c) => { c.onclick = () => { location.hash = c.dataset.filter ? `#/jobs?state=${c.dataset.filter}` : "#/jobs"; }; });
  $("#find").onsubmit = (e) => { e.preventDefault(); const v = $("#find-id").value.trim(); if (v) location.hash = `#/jobs/${encodeURIComponent(v)}`; };
  const body = $("#jobs tbody");
  const rowOf = (jobId) => body.querySelector(`tr[data-job="${CSS.escape(jobId)}"]`);
  const refresh = async (jobId) => {
    let job;
    try { job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`); } catch (_) { return; }
    if (id !== pageId) return;
    const row = rowOf(jobId);
    const html = jobRow(job);
    if (row) row.outerHTML = html;
    else if (!filter || job.state === filter) {
      body.insertAdjacentHTML("afterbegin", html);
      const empty = $("#no-jobs");
      if (empty) empty.remove();
    }
    const fresh = rowOf(jobId);
    if (fresh) bindCancel(fresh);
    if (filter && job.state !== filter && fresh) fresh.remove();
  };
  bindCancel(body, (job) => refresh(job.id));
  follow("/v1/events", {
    // A row on the page takes its new state from the event; a job not on it
    // (a new one) and one that ended (its buttons and outputs change) are read.
    state: (e) => {
      const row = rowOf(e.job_id);
      if (!row || TERMINAL.includes(e.state)) { refresh(e.job_id); return; }
      row.querySelector(".state").innerHTML = pill(e.state);
    },
    progress: (e) => {
      const row = rowOf(e.job_id);
      if (!row) return;
      row.querySelector(".progress").innerHTML = bar({ state: e.state, progress: e.progress });
      row.querySelector(".state").innerHTML = pill(e.state);
    },
  });
}

async function jobPage(id, jobId) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let job;
  try { job = await api("GET", path); } catch (err) {
    if (id !== pageId) return;
    view().innerHTML = `<h1>Job</h1><div class="card empty">${esc(err.status === 404 ? `No job ${jobId}.` : err.message)}</div>`;
    return;
  }
  const [events, tasks, deliveries] = await Promise.all([
    api("GET", `${path}/events`), api("GET", `${path}/tasks`), api("GET", `${path}/deliveries`),
  ]);
  if (id !== pageId) return;
  const ended = TERMINAL.includes(job.state);
  const actions = !canAct() ? "" : `
    ${ended ? "" : `<button class="danger" data-cancel="${esc(job.id)}" id="cancel">Cancel</button>`}
    ${["ERROR", "CANCELED"].includes(job.state) ? `<button class="primary" id="retry">Retry</button>` : ""}`;
  const kv = (k, v) => `<div>${esc(k)}</div><div>${v}</div>`;
  const stamp = (e, i, all) => {
    const next = all[i + 1];
    const took = next ? ` · ${((new Date(next.at) - new Date(e.at)) / 1000).toFixed(1)} s` : "";
    return `<li class="${esc(e.state)}"><span class="when">${esc(new Date(e.at).toLocaleString())}</span>${pill(e.state)}<span class="muted">${esc(e.details ? e.details.split("\n")[0].slice(0, 120) : "")}${took}</span></li>`;
  };
  view().innerHTML = `
    <div class="head"><h1 class="mono" style="font-size:18px">${esc(job.id)}</h1><span id="job-state">${pill(job.state)}</span>
      <div class="actions">${actions}</div></div>
    <div class="sub">${esc(job.source_path)} → ${esc(job.dest_path)}</div>
    <div class="card" id="job-progress">${bar(job)}</div>
    ${job.state === "ERROR" && job.state_details ? `<div class="card"><h2>Why it failed${job.error_code ? ` · <span class="mono">${esc(job.error_code)}</span>` : ""}</h2><pre id="stderr">${esc(job.state_details)}</pre></div>` : ""}
    <div class="two">
      <div class="card"><h2>Job</h2><div class="kv">
        ${kv("Queue", `${esc(job.queue)} · priority ${esc(job.priority)}`)}
        ${kv("Nommer", esc(job.job_options && job.job_options.nommer))}
        ${job.preset ? kv("Preset", esc(job.preset)) : ""}
        ${kv("Attempts", `${esc(job.attempts)} of ${esc(job.max_attempts)}`)}
        ${kv("Submitted by", esc(job.submitted_by || "—"))}
        ${kv("Submitted", when(job.created_at))}
        ${kv("Updated", when(job.updated_at))}
        ${job.retry_of ? kv("Retry of", `<a class="mono" href="#/jobs/${esc(job.retry_of)}">${esc(job.retry_of)}</a>`) : ""}
        ${kv("Webhooks", esc(job.notify_url ? `${job.notify_url} (${job.notify_format})` : "none"))}
        ${job.warnings && job.warnings.length ? kv("Warnings", esc(job.warnings.join("; "))) : ""}
      </div></div>
      <div class="card"><h2>Timeline</h2><ul class="timeline" id="timeline">${events.events.map(stamp).join("")}</ul></div>
    </div>
    <div class="card"><h2>Tasks</h2><table><tr><th>#</th><th>Kind</th><th>State</th><th>Node</th><th>Attempts</th><th>Started</th><th>Finished</th></tr>
      ${tasks.tasks.map((t) => `<tr><td>${esc(t.task)}</td><td>${esc(t.kind)}</td><td>${pill(t.state)}</td><td class="mono">${esc(t.node || "—")}</td><td>${esc(t.attempts)}</td><td>${when(t.started_at)}</td><td>${when(t.finished_at)}</td></tr>`).join("")}</table></div>
    <div class="card"><h2>Outputs</h2><table><tr><th>Kind</th><th>Destination</th><th>State</th><th>Quality check</th></tr>
      ${(job.outputs || []).map((o) => `<tr><td>${esc(o.kind)}</td><td class="mono">${esc(o.dest_path)}</td><td>${pill(o.state)}</td>
        <td>${o.qc ? `<details><summary>${esc(qcLine(o.qc))}</summary><pre>${esc(JSON.stringify(o.qc, null, 2))}</pre></details>` : `<span class="muted">${ended ? "none" : "after the encode"}</span>`}</td></tr>`).join("")}</table></div>
    <div class="card"><h2>Webhook deliveries</h2>${deliveriesTable(deliveries.deliveries)}</div>`;
  bindCancel(view());
  const retry = $("#retry");
  if (retry) retry.onclick = async () => {
    retry.disabled = true;
    try { const next = await api("POST", `${path}/retry`); toast("Retried as a new job"); location.hash = `#/jobs/${next.id}`; }
    catch (err) { toast(err.message); retry.disabled = false; }
  };
  view().querySelectorAll("[data-redeliver]").forEach((b) => {
    b.onclick = async () => {
      b.disabled = true;
      try { await api("POST", `${path}/deliveries/${b.dataset.redeliver}/redeliver`); toast("Redelivery queued"); }
      catch (err) { toast(err.message); }
      b.disabled = false;
    };
  });
  const last = events.events.length ? events.events[events.events.length - 1].id : 0;
  const again = debounce(() => { if (id === pageId) jobPage(id, jobId); }, 300);
  follow(`/v1/events?job=${encodeURIComponent(jobId)}&after=${last}`, {
    state: again,
    progress: (e) => { $("#job-progress").innerHTML = bar({ state: e.state, progress: e.progress }); $("#job-state").innerHTML = pill(e.state); },
  });
}

function qcLine(qc) {
  if (qc.psnr !== undefined) return `PSNR ${Number(qc.psnr).toFixed(1)} dB`;
  if (qc.level) return `${qc.level} check`;
  return "report";
}

function deliveriesTable(list) {
  if (!list.length) return `<div class="empty">No webhooks: the job has no notify_url.</div>`;
  return `<table><tr><th>Event</th><th>Status</th><th>Attempts</th><th>Next</th><th></th></tr>${list.map((d) => `
    <tr data-delivery="${esc(d.event_id)}"><td>${pill(d.job_state)} <span class="mono muted">${esc(d.webhook_id)}</span></td><td>${pill(d.status)}</td>
    <td>${d.attempts.map((a) => `<span class="pill light" title="${esc(a.error || "")}">${esc(a.status_code ?? "no answer")} · ${esc(a.duration_ms)} ms</span>`).join(" ") || `<span class="muted">none yet</span>`}</td>
    <td>${d.next_attempt_at ? when(d.next_attempt_at) : ""}</td>
    <td>${canAct() ? `<button data-redeliver="${esc(d.event_id)}">Redeliver</button>` : ""}</td></tr>`).join("")}</table>`;
}

async function nodesPage(id) {
  const [nodes, summary] = await Promise.all([api("GET", "/v1/nodes"), api("GET", "/v1/summary")]);
  if (id !== pageId) return;
  const running = summary.running || [];
  view().innerHTML = `
    <h1>Nodes</h1><div class="sub">Every worker feederd has heard from: what its sandbox enforces and what it runs now.</div>
    <div class="card" style="padding:4px 8px"><table><tr><th>Node</th><th>State</th><th>Sandbox</th><th>Slots</th><th>Running tasks</th><th>Last heartbeat</th><th>Version</th></tr>
    ${nodes.nodes.map((n) => `<tr data-node="${esc(n.id)}"><td class="mono">${esc(n.id)}<div class="muted">${esc(n.hostname || "")} · ${esc(n.fleet)}</div></td><td>${pill(n.state)}</td>
      <td>${n.sandbox ? `<span class="pill light">${esc(n.sandbox)}</span>` : `<span class="muted">unknown</span>`}</td><td>${esc(n.running_jobs)} / ${esc(n.max_jobs)}</td>
      <td>${running.filter((t) => t.node_id === n.id).map((t) => `<a class="mono" href="#/jobs/${esc(t.job_id)}">${esc(t.job_id.slice(0, 12))}…#${esc(t.task)}</a> ${pill(t.state)}`).join("<br>") || `<span class="muted">idle</span>`}</td>
      <td>${when(n.last_heartbeat_at)}</td><td class="mono">${esc(n.version || "")}</td></tr>`).join("")}</table>
    ${nodes.nodes.length ? "" : `<div class="empty">No worker has registered yet.</div>`}</div>`;
  const again = debounce(() => { if (id === pageId) nodesPage(id); }, 800);
  if (!stream) follow("/v1/events", { state: again });
  else stream.addEventListener("state", again, { once: true });
}

async function fleetPage(id) {
  const fleet = await api("GET", "/v1/fleet");
  if (id !== pageId) return;
  if (fleet.fleet === "static") {
    view().innerHTML = `<h1>Fleet</h1><div class="card empty">A static fleet: you start the workers, so feederd makes no scaling decisions. The Nodes page shows them.</div>`;
    return;
  }
  const rows = (list, cols) => (list || []).slice().reverse().map((x) => `<tr>${cols.map((c) => `<td>${esc(typeof x[c] === "object" ? JSON.stringify(x[c]) : x[c])}</td>`).join("")}</tr>`).join("");
  view().innerHTML = `
    <h1>Fleet</h1><div class="sub">${esc(fleet.fleet)} · at most ${esc(fleet.max_nodes)} nodes of ${esc(fleet.per_node)} slots · every ${esc(fleet.interval_s)} s</div>
    <div class="card"><h2>Members</h2><table><tr><th>Member</th><th>Instance</th><th>Launched</th></tr>${(fleet.members || []).map((m) => `<tr><td class="mono">${esc(m.id)}</td><td class="mono">${esc(m.instance_id || "")}</td><td>${when(m.launched_at)}</td></tr>`).join("")}</table></div>
    <div class="two">
      <div class="card"><h2>Decisions</h2><pre>${esc(JSON.stringify((fleet.decisions || []).slice(-20).reverse(), null, 2))}</pre></div>
      <div class="card"><h2>Events</h2><table>${rows((fleet.events || []).slice(-30), Object.keys((fleet.events || [])[0] || {}))}</table></div>
    </div>`;
  const again = debounce(() => { if (id === pageId) fleetPage(id); }, 1500);
  follow("/v1/events", { state: again });
}

async function presetsPage(id) {
  const list = await api("GET", "/v1/presets");
  if (id !== pageId) return;
  view().innerHTML = `
    <h1>Presets</h1><div class="sub">Name one in a job's <span class="mono">preset</span> field.</div>
    <div class="card" style="padding:4px 8px"><table><tr><th>Preset</th><th>From</th><th>Makes</th><th></th></tr>
    ${list.presets.map((p) => `<tr><td class="mono">${esc(p.name)}</td><td>${pill(p.origin || "stored")}</td><td>${esc(describePreset(p))}</td>
      <td><details><summary>body</summary><pre>${esc(JSON.stringify(p, null, 2))}</pre></details></td></tr>`).join("")}</table></div>`;
}

function describePreset(p) {
  if (p.outputs) return p.outputs.map((o) => o.kind).join(", ");
  if (p.job_options) return `one file (${p.job_options.nommer})`;
  return "";
}

// ---- routing ----

async function route() {
  const id = ++pageId;
  closeStream();
  const [path, query] = (location.hash.slice(1) || (canSeeFleet() ? "/summary" : "/jobs")).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === parts[0]));
  try {
    if (parts[0] === "jobs" && parts[1]) await jobPage(id, decodeURIComponent(parts[1]));
    else if (parts[0] === "jobs") await jobsPage(id, params);
    else if (parts[0] === "nodes" && canSeeFleet()) await nodesPage(id);
    else if (parts[0] === "fleet" && canSeeFleet()) await fleetPage(id);
    else if (parts[0] === "presets") await presetsPage(id);
    else if (canSeeFleet()) await summaryPage(id);
    else await jobsPage(id, params);
  } catch (err) {
    if (err.status === 401) return;
    if (id === pageId) view().innerHTML = `<div class="card empty">${esc(err.message)}</div>`;
  }
}

async function start() {
  let ready;
  try { ready = await loadSession(); } catch (err) { view().innerHTML = `<div class="card empty">${esc(err.message)}</div>`; return; }
  if (!ready) { signIn(); return; }
  $("#nav").style.display = "";
  document.querySelectorAll("nav a[data-needs=fleet]").forEach((a) => { a.style.display = canSeeFleet() ? "" : "none"; });
  renderWho();
  await route();
}

window.addEventListener("hashchange", route);
start();
