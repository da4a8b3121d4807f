// The teacher's page: a small client of /api/class (docs/classroom.md). Every value from the
// server is written with textContent, never as HTML: names and prompts are students' text.
// URLs are relative ("api/class", not "/api/class"): behind a JupyterHub the page is at
// /services/NAME/teacher and the API at /services/NAME/api/….

const $ = (id) => document.getElementById(id);
const KEY = "tlc-teacher-key";
const REFRESH_MS = 1000;

let key = sessionStorage.getItem(KEY) || "";
let timer = null;

async function api(method, path, body) {
  const headers = {};
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    let message = `${r.status}`;
    try {
      message = (await r.json()).error.message;
    } catch (_) { /* not JSON: keep the status */ }
    const error = new Error(message);
    error.status = r.status;
    throw error;
  }
  return r;
}

const json = async (method, path, body) => (await api(method, path, body)).json();

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${Math.floor(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
  return td;
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function fill(table, empty, rows, render) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren(...rows.map(render));
  $(empty).hidden = rows.length > 0;
}

function renderMode(mode, message) {
  $("mode").textContent = mode === "paused" ? "Paused" : "Open";
  $("mode").className = `badge ${mode}`;
  $("mode-message").textContent = mode === "paused" ? message : "";
}

function renderLive(live) {
  renderMode(live.mode, live.message);
  const rows = [...live.running, ...live.waiting];
  fill("live", "live-empty", rows, (r) => {
    const tr = document.createElement("tr");
    cell(tr, r.user);
    cell(tr, r.model);
    cell(tr, r.status === "running" ? "running" : `waiting · #${r.position}`);
    cell(tr, duration(r.status === "running" ? r.running_s : r.waiting_s));
    cell(tr, r.tokens);
    cell(tr, "").append(button("Cancel", () => cancel(r)));
    return tr;
  });
}

function renderStudents(data) {
  fill("students", "students-empty", data.students, (s) => {
    const tr = document.createElement("tr");
    cell(tr, s.user);
    cell(tr, s.prompts);
    cell(tr, s.tokens);
    cell(tr, s.errors).className = s.errors ? "error" : "";
    cell(tr, s.budget ? s.budget.text : `not limited (${s.role})`);
    cell(tr, "").append(button("Read", () => read(s.user)));
    return tr;
  });
}

function renderClass(state) {
  const d = state.budget.default;
  const own = Object.entries(state.budget.students)
    .map(([u, b]) => `${u}: ${b.prompts || "∞"} prompts, ${b.tokens || "∞"} tokens`);
  const session = state.budget.session;
  const per = session ? "a session" : "a day";
  $("budget-period").textContent = session ? `per session (${session.label || "unnamed"})` : "per day";
  $("session-end").hidden = !session;
  $("budget-now").textContent =
    `Class: ${d.prompts || "unlimited"} prompts, ${d.tokens || "unlimited"} reply tokens ${per}` +
    (own.length ? ` · own budgets: ${own.join("; ")}` : "") +
    (session
      ? ` · counting since ${new Date(session.started_at * 1000).toLocaleTimeString()}`
      : ` · resets ${new Date(state.budget.resets_at * 1000).toLocaleString()}`);
  const model = $("prompt-model").value || "*";
  if (document.activeElement !== $("prompt-text")) {
    $("prompt-text").value = state.prompts[model] || "";
  }
}

async function refresh() {
  try {
    const [live, students, state] = await Promise.all([
      json("GET", "api/class/live"),
      json("GET", "api/class/students"),
      json("GET", "api/class"),
    ]);
    renderLive(live);
    renderStudents(students);
    renderClass(state);
    say(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (e.status === 401) {
      return showLogin(key ? "That key is not known to this server." : "");
    }
    if (e.status === 403) return showLogin("This page is for teachers and admins.");
    say(`cannot reach the queue server: ${e.message}`, true);
  }
}

async function cancel(r) {
  if (!confirm(`Cancel ${r.user}'s request?`)) return;
  await act(() => json("DELETE", `api/class/requests/${encodeURIComponent(r.id)}`));
}

async function read(user) {
  const data = await json("GET", `api/class/students/${encodeURIComponent(user)}/history?limit=20`);
  $("reader-user").textContent = user;
  const parts = [];
  for (const row of data.requests.reverse()) {
    const block = document.createElement("article");
    const head = document.createElement("h3");
    head.textContent = `${new Date(row.created * 1000).toLocaleTimeString()} · ${row.model} · ${row.status}`;
    block.append(head);
    for (const m of [...row.messages, { role: "assistant", content: row.text }]) {
      const p = document.createElement("p");
      p.className = `msg ${m.role}`;
      const text = typeof m.content === "string" ? m.content
        : (m.content || []).map((part) => part.text || "").join("");
      p.textContent = `${m.role}: ${text}`;
      block.append(p);
    }
    parts.push(block);
  }
  $("reader-body").replaceChildren(...parts);
  $("reader").hidden = false;
  $("reader").scrollIntoView({ behavior: "smooth" });
}

async function act(fn) {
  try {
    await fn();
    await refresh();
  } catch (e) {
    say(e.message, true);
  }
}

async function download(format) {
  const since = $("since").value;
  const query = new URLSearchParams({ format, ...(since ? { since } : {}) });
  await act(async () => {
    const r = await api("GET", `api/class/export?${query}`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await r.blob());
    link.download = `tlc-class-${new Date().toISOString().slice(0, 10)}.${format}`;
    link.click();
    URL.revokeObjectURL(link.href);
  });
}

function showLogin(message) {
  clearInterval(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function start() {
  $("login").hidden = true;
  $("login-error").textContent = "";
  $("main").hidden = false;
  try {
    const models = await json("GET", "api/models");
    const select = $("prompt-model");
    select.replaceChildren(select.options[0]);
    for (const m of models.models) select.append(new Option(m.display_name, m.id));
  } catch (_) { /* refresh() says why */ }
  await refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function wire() {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    key = $("key").value.trim();
    sessionStorage.setItem(KEY, key);
    start();
  });
  $("pause-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => json("POST", "api/class/pause", { message: $("pause-message").value }));
  });
  $("resume").addEventListener("click", () => act(() => json("POST", "api/class/resume")));
  $("budget-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const user = $("budget-user").value.trim();
    const body = { prompts: Number($("budget-prompts").value), tokens: Number($("budget-tokens").value) };
    const path = user ? `api/class/budget/${encodeURIComponent(user)}` : "api/class/budget";
    act(() => json("PUT", path, body));
  });
  $("budget-reset").addEventListener("click", () => {
    const user = $("budget-user").value.trim();
    if (user) act(() => json("DELETE", `api/class/budget/${encodeURIComponent(user)}`));
  });
  $("session-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => json("POST", "api/class/session", { label: $("session-label").value }));
  });
  $("session-end").addEventListener("click", () => act(() => json("DELETE", "api/class/session")));
  $("prompt-model").addEventListener("change", () => $("prompt-text").blur() || refresh());
  $("prompt-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const model = $("prompt-model").value || null;
    act(() => json("PUT", "api/class/prompt", { text: $("prompt-text").value, model }));
  });
  $("reader-close").addEventListener("click", () => { $("reader").hidden = true; });
  for (const b of document.querySelectorAll(".export")) {
    b.addEventListener("click", () => download(b.dataset.format));
  }
}

wire();
start();
