// TeacherPanel's view: draws the traits the kernel fills from /api/class/* and sends the
// buttons back as custom messages {k: action, ...}. It never calls the queue server itself
// (another origin; the server's guard refuses that). Every value is written with
// textContent, never as HTML: names, prompts and conversations are students' text.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(text, onClick, className = "tlc-t-button") {
  const b = el("button", className, text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function input(placeholder, className, type = "text") {
  const i = el("input", className);
  i.type = type;
  i.placeholder = placeholder;
  return i;
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${Math.floor(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
}

function section(title, ...children) {
  const box = el("section", "tlc-t-section");
  box.append(el("h3", "tlc-t-heading", title), ...children);
  return box;
}

function table(className, headings, emptyText) {
  const t = el("table", `tlc-t-table ${className}`);
  const head = el("tr");
  for (const h of headings) head.append(el("th", "", h));
  t.append(el("thead"), el("tbody"));
  t.tHead.append(head);
  const empty = el("div", "tlc-t-empty", emptyText);
  return { t, empty, fill(rows) {
    t.tBodies[0].replaceChildren(...rows);
    empty.hidden = rows.length > 0;
    t.hidden = rows.length === 0;
  } };
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.append(c); else td.textContent = c === undefined ? "" : String(c);
    tr.append(td);
  }
  return tr;
}

function messageText(m) {
  if (typeof m.content === "string") return m.content;
  return (m.content || []).map((part) => part.text || "").join("");
}

function render({ model, el: root }) {
  root.classList.add("tlc-teacher");
  const send = (msg) => model.send(msg);

  // Header: the class's mode, when it was read, why it cannot be read.
  const mode = el("span", "tlc-t-badge");
  const modeMessage = el("span", "tlc-t-mode-message");
  const updated = el("span", "tlc-t-updated");
  const error = el("div", "tlc-t-error");
  const again = button("Try again", () => send({ k: "refresh" }));
  const header = el("div", "tlc-t-header");
  header.append(el("span", "tlc-t-title", "Class"), mode, modeMessage, updated);

  const live = table("tlc-t-live", ["student", "model", "status", "for", "tokens", ""], "Nobody waits or runs.");
  const students = table("tlc-t-students", ["student", "prompts", "tokens", "errors", "budget left", ""],
    "Nobody has sent anything today.");
  const resets = el("div", "tlc-t-muted");

  // Controls: pause, budgets, class prompt, export.
  const pauseMessage = input("Message students see, e.g. Chat is paused for the quiz until 10:30",
    "tlc-t-pause-message");
  const pauseRow = el("div", "tlc-t-row");
  pauseRow.append(pauseMessage,
    button("Pause", () => send({ k: "pause", message: pauseMessage.value }), "tlc-t-button tlc-t-pause"),
    button("Resume", () => send({ k: "resume" }), "tlc-t-button tlc-t-resume"));

  const budgetUser = input("student (empty: the class)", "tlc-t-budget-user");
  const budgetPrompts = input("prompts/day", "tlc-t-budget-prompts", "number");
  const budgetTokens = input("tokens/day", "tlc-t-budget-tokens", "number");
  for (const i of [budgetPrompts, budgetTokens]) { i.min = "0"; i.step = "1"; }
  const budgetNow = el("div", "tlc-t-muted tlc-t-budget-now");
  const budgetRow = el("div", "tlc-t-row");
  budgetRow.append(budgetUser, budgetPrompts, budgetTokens,
    button("Set budget", () => send({
      k: "budget", user: budgetUser.value.trim() || null,
      prompts: Number(budgetPrompts.value || 0), tokens: Number(budgetTokens.value || 0),
    })),
    button("Use the class's", () => send({ k: "budget_reset", user: budgetUser.value.trim() })));
  const sessionLabel = input("session, e.g. Lab 3", "tlc-t-session-label");
  const sessionEnd = button("Back to per day", () => send({ k: "session_end" }));
  budgetRow.append(sessionLabel,
    button("Start a session", () => send({ k: "session", label: sessionLabel.value.trim() })),
    sessionEnd);

  const promptModel = el("select", "tlc-t-prompt-model");
  const promptText = el("textarea", "tlc-t-prompt-text");
  promptText.rows = 3;
  promptText.placeholder = "Instructions added to every student request (empty: none)";
  const promptRow = el("div", "tlc-t-row");
  promptRow.append(promptModel, button("Set class prompt", () => send({
    k: "prompt", text: promptText.value, model: promptModel.value || null,
  })));

  const since = input("since (e.g. 2026-09-01; empty: all)", "tlc-t-since");
  const exportRow = el("div", "tlc-t-row");
  exportRow.append(since,
    button("Export JSONL", () => send({ k: "export", format: "jsonl", since: since.value.trim() || null })),
    button("Export CSV", () => send({ k: "export", format: "csv", since: since.value.trim() || null })));

  const notice = el("div", "tlc-t-notice");
  const readerTitle = el("h3", "tlc-t-heading");
  const readerBody = el("div", "tlc-t-reader-body");
  const reader = el("section", "tlc-t-section tlc-t-reader");
  reader.append(readerTitle, button("Close", () => { reader.hidden = true; }), readerBody);
  reader.hidden = true;

  const main = el("div", "tlc-t-main");
  main.append(
    section("Live", live.t, live.empty),
    section("Students today", students.t, students.empty, resets),
    reader,
    section("Pause the class", pauseRow),
    section("Budgets", budgetRow, budgetNow),
    section("Class prompt", promptRow, promptText),
    section("Export the class's history", exportRow),
  );
  root.append(header, error, again, notice, main);

  function drawHeader() {
    const l = model.get("live") || {};
    const k = model.get("klass") || {};
    const m = l.mode || k.mode || "open";
    mode.textContent = m === "paused" ? "Paused" : "Open";
    mode.className = `tlc-t-badge tlc-t-${m === "paused" ? "paused" : "open"}`;
    modeMessage.textContent = m === "paused" ? (l.message ?? k.message ?? "") : "";
    const t = model.get("updated");
    updated.textContent = t ? `updated ${new Date(t * 1000).toLocaleTimeString()}` : "";
    const text = model.get("error");
    const denied = model.get("denied");
    error.textContent = text;
    error.hidden = !text;
    again.hidden = !denied;
    main.hidden = denied;
    header.hidden = denied;
    root.classList.toggle("tlc-t-stale", Boolean(text) && !denied);
  }

  function drawLive() {
    const l = model.get("live") || {};
    const rows = [...(l.running || []), ...(l.waiting || [])].map((r) => {
      const running = r.status === "running";
      const tr = row([r.user, r.model, running ? "running" : `waiting · #${r.position}`,
        duration(running ? r.running_s : r.waiting_s), r.tokens,
        button("Cancel", () => {
          if (confirm(`Cancel ${r.user}'s request?`)) send({ k: "cancel", id: r.id });
        })]);
      tr.className = running ? "tlc-t-running" : "tlc-t-waiting";
      return tr;
    });
    live.fill(rows);
    drawHeader();
  }

  function drawStudents() {
    const s = model.get("students") || {};
    students.fill((s.students || []).map((u) => {
      const tr = row([u.user, u.prompts, u.tokens, u.errors,
        u.budget ? u.budget.text : `not limited (${u.role || "student"})`,
        button("Read", () => {
          send({ k: "read", user: u.user });
          // The same student again: the trait may not change, so show what is there now.
          if ((model.get("reader") || {}).user === u.user) reader.hidden = false;
        })]);
      if (u.errors) tr.children[3].className = "tlc-t-bad";
      return tr;
    }));
    resets.textContent = s.session
      ? `Counts since the session "${s.session.label || "unnamed"}" started.`
      : s.resets_at
        ? `Counts since midnight; budgets reset ${new Date(s.resets_at * 1000).toLocaleString()}.` : "";
  }

  function drawClass() {
    const k = model.get("klass") || {};
    const b = k.budget || {};
    const d = b.default || {};
    const own = Object.entries(b.students || {})
      .map(([u, x]) => `${u}: ${x.prompts || "∞"} prompts, ${x.tokens || "∞"} tokens`);
    sessionEnd.hidden = !b.session;
    budgetNow.textContent = `Class: ${d.prompts || "unlimited"} prompts, ` +
      `${d.tokens || "unlimited"} reply tokens ${b.session ? "a session" : "a day"}` +
      (own.length ? ` · own: ${own.join("; ")}` : "");
    const options = [["", "all models"], ...(model.get("models") || []).map((m) => [m.id, m.name])];
    if (promptModel.options.length !== options.length) {
      const chosen = promptModel.value;
      promptModel.replaceChildren(...options.map(([v, t]) => new Option(t, v)));
      promptModel.value = chosen;
    }
    if (document.activeElement !== promptText) {
      promptText.value = (k.prompts || {})[promptModel.value || "*"] || "";
    }
    drawHeader();
  }

  function drawReader() {
    const r = model.get("reader") || {};
    if (!r.user) { reader.hidden = true; return; }
    readerTitle.textContent = `${r.user}'s conversations (newest last)`;
    const blocks = [...(r.requests || [])].reverse().map((item) => {
      const block = el("article", "tlc-t-conversation");
      block.append(el("div", "tlc-t-muted",
        `${new Date(item.created * 1000).toLocaleTimeString()} · ${item.model} · ${item.status}`));
      const reply = item.text ? [{ role: "assistant", content: item.text }] : [];
      for (const m of [...(item.messages || []), ...reply]) {
        block.append(el("p", `tlc-t-msg tlc-t-${m.role}`, `${m.role}: ${messageText(m)}`));
      }
      return block;
    });
    readerBody.replaceChildren(...(blocks.length ? blocks : [el("div", "tlc-t-empty", "Nothing kept yet.")]));
    reader.hidden = false;
  }

  function drawNotice() {
    const n = model.get("notice") || {};
    notice.replaceChildren(el("span", "", n.text || ""));
    if (n.path) notice.append(el("code", "tlc-t-path", n.path));
    notice.className = `tlc-t-notice${n.error ? " tlc-t-bad" : ""}`;
    notice.hidden = !n.text;
  }

  const handlers = [["live", drawLive], ["students", drawStudents], ["klass", drawClass],
    ["models", drawClass], ["reader", drawReader], ["notice", drawNotice],
    ["error", drawHeader], ["denied", drawHeader], ["updated", drawHeader]];
  for (const [name, fn] of handlers) model.on(`change:${name}`, fn);
  promptModel.addEventListener("change", drawClass);
  drawLive(); drawStudents(); drawClass(); drawReader(); drawNotice();
  // The kernel polls only while some view is on screen.
  send({ k: "view", on: true });
  return () => {
    for (const [name, fn] of handlers) model.off(`change:${name}`, fn);
    try {
      send({ k: "view", on: false });
    } catch (_) { /* the widget itself was closed: nothing polls any more */ }
  };
}

export default { render };
