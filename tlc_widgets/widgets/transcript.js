// The chat transcript: finished turns from the `turns` trait, the live reply from custom
// messages (see transcript.py for the wire format):
//   {k: "begin"}              a reply starts: open an empty live bubble
//   "text"                    append content (coalesced, ≤ 30 a second) — the common case
//   {k: "d", c?, r?}          append content and/or reasoning
//   {k: "live", c, r}         the whole reply so far (answer to our {k: "sync"} on render)
//   {k: "end"}                drop the live bubble (nothing to keep)
// A change of `turns` redraws the finished turns and drops the live bubble: the final
// reply is in the trait now. A prompt the server never answered (`left_out`) gets Edit and
// Retry buttons, which send {k: "edit" | "retry", i: its index} to the kernel.
//
// The live reply renders incrementally (LiveMarkdown): blocks that are finished — up to the
// last blank line outside a code fence — are rendered once and kept; each flush re-renders
// only the open block after them. So the cost of a flush does not grow with the reply.
//
// Markdown (renderMarkdown, LiveMarkdown, escapeHtml) comes from markdown.js, which
// transcript.py puts in front of this file: one ES module in the browser.

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

function liveParts(parts) {
  parts.liveBody = new LiveMarkdown(parts.body);
  parts.liveThinking = new LiveMarkdown(parts.thinking.lastChild);
  return parts;
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

  function actions(index) {
    const bar = node("div", "tlc-turn-actions");
    for (const [kind, label, title] of [
      ["edit", "Edit", "Put this prompt back in the box to change it"],
      ["retry", "Retry", "Send this prompt again"],
    ]) {
      const button = node("button", "tlc-tool-button", label);
      button.type = "button";
      button.title = title;
      button.addEventListener("click", () => model.send({ k: kind, i: index }));
      bar.append(button);
    }
    return bar;
  }

  function drawTurns() {
    const was = atBottom();
    dropLive();
    const items = model.get("turns") || [];
    turns.replaceChildren(...items.map((turn, index) => {
      const parts = bubble(turn.role);
      fill(parts, turn.content || "", turn.reasoning || "");
      if (turn.note) parts.el.append(node("div", "tlc-note", escapeHtml(turn.note)));
      if (turn.left_out) {
        parts.el.classList.add("tlc-left-out");
        parts.el.append(actions(index));
      }
      return parts.el;
    }));
    empty.hidden = items.length > 0;
    follow(was);
  }

  function openLive() {
    dropLive();
    live = { parts: liveParts(bubble("assistant")), reasoning: false };
    live.parts.el.classList.add("tlc-live", "tlc-waiting");
    el.append(live.parts.el);
    empty.hidden = true;
  }

  function dropLive() {
    if (live) live.parts.el.remove();
    live = null;
  }

  // Each flush's render time (ms), when a test or a curious reader asks for them by
  // setting `globalThis.tlcRenderTimes = []`.
  function paintLive(content, reasoning, whole) {
    const t0 = performance.now();
    const was = atBottom();
    const { liveBody, liveThinking, thinking } = live.parts;
    if (whole) liveBody.reset(content);
    else if (content) liveBody.append(content);
    if (whole) liveThinking.reset(reasoning);
    else if (reasoning) liveThinking.append(reasoning);
    live.reasoning = (!whole && live.reasoning) || Boolean(reasoning);
    thinking.hidden = !live.reasoning;
    live.parts.el.classList.toggle("tlc-waiting", !liveBody.text);
    follow(was);
    if (Array.isArray(globalThis.tlcRenderTimes)) {
      globalThis.tlcRenderTimes.push({ ms: performance.now() - t0, chars: liveBody.text.length });
    }
  }

  function onMessage(msg) {
    if (typeof msg === "string") msg = { k: "d", c: msg };
    if (!msg || typeof msg !== "object") return;
    if (msg.k === "begin") {
      openLive();
    } else if (msg.k === "d" || msg.k === "live") {
      if (!live) openLive(); // we joined mid-reply
      paintLive(msg.c || "", msg.r || "", msg.k === "live");
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
