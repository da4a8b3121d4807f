// Markdown for the transcript: a small escape-first subset renderer (renderMarkdown), and
// LiveMarkdown, which renders a reply that grows at its end incrementally. Rendered here so
// live and finished text look alike without an npm build. Safety: every piece of model
// text goes through escapeHtml before it becomes markup; links only for http(s) URLs.
//
// transcript.py prepends this file to transcript.js: the two are one ES module in the
// browser (anywidget loads one module per widget).

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

// ---------------------------------------------------------------- the live reply

// Markdown that grows at its end. renderMarkdown keeps no state across a blank line outside
// a fence (paragraphs, lists and quotes end there; headings and rules are one line), so
// render(a + b) === render(a) + render(b) when a ends with such a blank line: finished
// blocks are appended once and only the tail is rendered again.
export class LiveMarkdown {
  constructor(el) {
    this.el = el;
    this.reset("");
  }

  reset(text) {
    this.done = document.createElement("div");
    this.done.className = "tlc-md-done";
    this.tail = document.createElement("div");
    this.tail.className = "tlc-md-tail";
    this.el.replaceChildren(this.done, this.tail);
    this.text = "";
    this.cr = false; // a chunk ended in CR: it may be the first half of a CRLF
    this.cut = 0; // text[0:cut] is rendered in `done`
    this.scan = 0; // lines before this index have been looked at
    this.fence = null; // the open fence's marker while inside one
    this.append(text);
  }

  append(chunk) {
    let s = (this.cr ? "\r" : "") + chunk;
    this.cr = s.endsWith("\r");
    if (this.cr) s = s.slice(0, -1);
    this.text += s.replace(/\r\n?/g, "\n");
    let boundary = -1;
    for (let nl; (nl = this.text.indexOf("\n", this.scan)) !== -1; this.scan = nl + 1) {
      const line = this.text.slice(this.scan, nl);
      let m;
      if (this.fence) {
        if (line.trim().startsWith(this.fence)) this.fence = null;
      } else if ((m = line.match(FENCE))) {
        this.fence = m[1];
      } else if (!line.trim()) {
        boundary = nl + 1;
      }
    }
    if (boundary > this.cut) {
      this.done.insertAdjacentHTML("beforeend", renderMarkdown(this.text.slice(this.cut, boundary)));
      this.cut = boundary;
    }
    this.tail.innerHTML = renderMarkdown(this.text.slice(this.cut));
  }
}
