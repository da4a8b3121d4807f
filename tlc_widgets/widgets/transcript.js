// The chat transcript: finished turns from the `turns` trait, the live reply from custom
// messages (see transcript.py for the wire format):
//   {k: "begin"}              a reply starts: open an empty live bubble
//   "text"                    append content (coalesced, ≤ 30 a second) — the common case
//   {k: "d", c?, r?}          append content and/or reasoning
//   {k: "live", c, r}         the whole reply so far (answer to our {k: "sync"} on render)
//   {k: "end"}                drop the live bubble (nothing to keep)
// A change of `turns` redraws the finished turns and drops the live bubble: the final
// reply is in the trait now.
//
// Markdown: a small subset, rendered here so live and finished text look alike without an
// npm build. Safety: every piece of model text goes through escapeHtml before it becomes
// markup, and links are kept only for http(s) URLs.

const escapeHtml = (s) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");

// ---------------------------------------------------------------- inline markup

function inline(raw) {
  // Code spans first, parked behind placeholders so nothing inside them is formatted.
  const codes = [];
  let s = escapeHtml(raw).replace(/`([^`\n]+)`/g, (_, code) => {
    codes.push(code);
    return `\u0000${codes.length - 1}\u0000`;
  });
  s = s
    .replace(/\*\*(?=\S)([^*\n]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([^_\n]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=\S)([^*\n]*?\S)\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=\S)([^_\n]*?\S)_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([^~\n]*?\S)~~/g, "<del>$1</del>")
    .replace(
      /\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
      '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>',
    );
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
}

// ---------------------------------------------------------------- code highlighting

const KEYWORDS = new Set(
  ("and as assert async await break case catch class const continue def del do elif else " +
    "enum except export extends false False finally fn for from func function go if impl " +
    "import in interface is lambda let match mut new nil None nonlocal not null or package " +
    "pass pub raise return self static struct super switch this throw true True try type " +
    "typeof use var void while with yield").split(" "),
);
const HASH_LANGS = new Set(["python", "py", "bash", "sh", "shell", "zsh", "console", "ruby",
  "rb", "yaml", "yml", "toml", "r", "perl", "make", "makefile", "dockerfile", "ini"]);
const STRINGS = String.raw`"""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'`;
const WORDS = String.raw`\b\d+(?:\.\d+)?\b|\b[A-Za-z_]\w*\b`;
const TOKENS = {
  hash: new RegExp(`(#[^\\n]*)|(${STRINGS})|(${WORDS})`, "g"),
  slash: new RegExp(String.raw`(\/\/[^\n]*|\/\*[\s\S]*?\*\/)|(${STRINGS}|` + "`[^`]*`)|(" + WORDS + ")", "g"),
};

function highlight(code, lang) {
  const kind = HASH_LANGS.has(lang) ? "hash" : lang ? "slash" : "hash";
  const pattern = TOKENS[kind];
  let out = "";
  let last = 0;
  for (const m of code.matchAll(pattern)) {
    out += escapeHtml(code.slice(last, m.index));
    last = m.index + m[0].length;
    const text = escapeHtml(m[0]);
    let cls = null;
    if (m[1]) cls = "comment";
    else if (m[2]) cls = "string";
    else if (/^\d/.test(m[0])) cls = "number";
    else if (KEYWORDS.has(m[0])) cls = "keyword";
    out += cls ? `<span class="tlc-tok-${cls}">${text}</span>` : text;
  }
  return out + escapeHtml(code.slice(last));
}

// ---------------------------------------------------------------- blocks

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;

export function renderMarkdown(src) {
  const lines = src.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let para = [];
  const endPara = () => {
    if (para.length) out.push(`<p>${para.map(inline).join("<br>")}</p>`);
    para = [];
  };
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    let m;
    if ((m = line.match(FENCE))) {
      endPara();
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(m[1]); i++) body.push(lines[i]);
      i++; // the closing fence; while streaming it may not have arrived yet: still code
      const lang = m[2].toLowerCase();
      const cls = lang ? ` class="language-${escapeHtml(lang)}"` : "";
      out.push(`<pre class="tlc-code"><code${cls}>${highlight(body.join("\n"), lang)}</code></pre>`);
    } else if ((m = line.match(HEADING))) {
      endPara();
      out.push(`<h${m[1].length}>${inline(m[2])}</h${m[1].length}>`);
      i++;
    } else if (RULE.test(line)) {
      endPara();
      out.push("<hr>");
      i++;
    } else if ((m = line.match(ITEM))) {
      endPara();
      const ordered = /\d/.test(m[1]);
      const items = [];
      for (; i < lines.length && (m = lines[i].match(ITEM)) && /\d/.test(m[1]) === ordered; i++) {
        items.push(`<li>${inline(m[2])}</li>`);
      }
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}>${items.join("")}</${tag}>`);
    } else if (QUOTE.test(line)) {
      endPara();
      const quoted = [];
      for (; i < lines.length && (m = lines[i].match(QUOTE)); i++) quoted.push(m[1]);
      out.push(`<blockquote>${renderMarkdown(quoted.join("\n"))}</blockquote>`);
    } else if (!line.trim()) {
      endPara();
      i++;
    } else {
      para.push(line);
      i++;
    }
  }
  endPara();
  return out.join("");
}

// ---------------------------------------------------------------- the view

function node(tag, className, html) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (html !== undefined) el.innerHTML = html;
  return el;
}

// One message bubble. Returns the parts the live view updates in place, so an open
// "Thinking" box stays open while tokens arrive.
function bubble(role) {
  const el = node("div", `tlc-turn tlc-${role}`);
  el.append(node("div", "tlc-role", role === "user" ? "You" : "Assistant"));
  if (role === "user") {
    const body = node("div", "tlc-body tlc-plain"); // what was typed, as typed
    el.append(body);
    return { el, thinking: null, body };
  }
  // Reasoning apart from the answer, collapsed until someone opens it.
  const thinking = node("details", "tlc-reasoning");
  thinking.append(node("summary", "", "Thinking"), node("div", "tlc-reasoning-body tlc-md"));
  thinking.hidden = true;
  const body = node("div", "tlc-body tlc-md");
  el.append(thinking, body);
  return { el, thinking, body };
}

function fill(parts, content, reasoning) {
  if (!parts.thinking) {
    parts.body.textContent = content;
    return;
  }
  parts.body.innerHTML = renderMarkdown(content);
  parts.thinking.hidden = !reasoning;
  if (reasoning) parts.thinking.lastChild.innerHTML = renderMarkdown(reasoning);
}

function render({ model, el }) {
  el.classList.add("tlc-transcript");
  const turns = node("div", "tlc-turns");
  const empty = node("div", "tlc-empty", "Ask something below; the reply appears here as it is written.");
  el.append(empty, turns);
  let live = null; // {parts, content, reasoning} while a reply streams

  // Keep following the bottom, unless the reader scrolled up to read.
  const atBottom = () => el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  const follow = (was) => { if (was) el.scrollTop = el.scrollHeight; };

  function drawTurns() {
    const was = atBottom();
    dropLive();
    const items = model.get("turns") || [];
    turns.replaceChildren(...items.map((turn) => {
      const parts = bubble(turn.role);
      fill(parts, turn.content || "", turn.reasoning || "");
      if (turn.note) parts.el.append(node("div", "tlc-note", escapeHtml(turn.note)));
      return parts.el;
    }));
    empty.hidden = items.length > 0;
    follow(was);
  }

  function openLive() {
    dropLive();
    live = { parts: bubble("assistant"), content: "", reasoning: "" };
    live.parts.el.classList.add("tlc-live");
    el.append(live.parts.el);
    empty.hidden = true;
  }

  function dropLive() {
    if (live) live.parts.el.remove();
    live = null;
  }

  function paintLive() {
    const was = atBottom();
    fill(live.parts, live.content, live.reasoning);
    follow(was);
  }

  function onMessage(msg) {
    if (typeof msg === "string") msg = { k: "d", c: msg };
    if (!msg || typeof msg !== "object") return;
    if (msg.k === "begin") {
      openLive();
      paintLive();
    } else if (msg.k === "d" || msg.k === "live") {
      if (!live) openLive(); // we joined mid-reply
      if (msg.k === "live") {
        live.content = msg.c || "";
        live.reasoning = msg.r || "";
      } else {
        live.content += msg.c || "";
        live.reasoning += msg.r || "";
      }
      paintLive();
    } else if (msg.k === "end") {
      dropLive();
      empty.hidden = (model.get("turns") || []).length > 0;
    }
  }

  model.on("change:turns", drawTurns);
  model.on("msg:custom", onMessage);
  drawTurns();
  // Deltas sent before this view existed are gone; ask for the reply so far, if any.
  model.send({ k: "sync" });
  return () => {
    model.off("change:turns", drawTurns);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
