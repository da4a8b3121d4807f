// The prompt box: a textarea and a Send button. Enter sends, Shift+Enter starts a new line
// (an ipywidgets Textarea cannot tell the two apart, which is why this is an anywidget).
// Sending is one custom message, {k: "submit", text}; nothing is synced while typing.
// While a reply runs (`busy`) Send is disabled: Stop it first. Sending nothing, or while
// busy, says so under the box instead of doing nothing. {k: "fill", text} from the kernel
// puts a prompt back in the box (Edit on a prompt that was not sent).

function render({ model, el }) {
  el.classList.add("tlc-prompt");
  const row = document.createElement("div");
  row.className = "tlc-prompt-row";
  const box = document.createElement("textarea");
  box.className = "tlc-prompt-input";
  box.rows = 2;
  box.placeholder = model.get("placeholder");
  box.setAttribute("aria-label", "Prompt");
  // Lumino matches keyboard shortcuts from the target up and stops at this attribute:
  // Notebook 7 listens in the capture phase, where stopPropagation below comes too late.
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const send = document.createElement("button");
  send.className = "tlc-send";
  send.type = "button";
  send.textContent = "Send";
  send.title = "Send (Enter). Shift+Enter: new line.";
  const hint = document.createElement("div");
  hint.className = "tlc-prompt-hint";
  hint.setAttribute("role", "status");
  row.append(box, send);
  el.append(row, hint);

  let hintTimer = null;
  function say(text) {
    hint.textContent = text;
    clearTimeout(hintTimer);
    hintTimer = setTimeout(() => { hint.textContent = ""; }, 4000);
  }

  function submit() {
    const text = box.value;
    if (model.get("busy")) {
      say("A reply is still being written: Stop it first (or wait for it).");
      return;
    }
    if (!text.trim()) {
      say("Type a prompt first.");
      box.focus();
      return;
    }
    hint.textContent = "";
    model.send({ k: "submit", text });
    box.value = "";
    box.focus();
  }

  function onKey(event) {
    // Keep the notebook's own shortcuts (Shift+Enter runs a cell, A/B insert cells …) out
    // of the box while someone types in it.
    event.stopPropagation();
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing &&
        !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      submit();
    }
  }

  function onMessage(msg) {
    if (msg && msg.k === "fill") {
      box.value = String(msg.text || "");
      box.focus();
    }
  }

  const busy = () => {
    const on = Boolean(model.get("busy"));
    el.classList.toggle("tlc-busy", on);
    send.disabled = on;
    send.title = on ? "A reply is being written: Stop it first" : "Send (Enter). Shift+Enter: new line.";
    if (!on) hint.textContent = "";
  };
  const placeholder = () => { box.placeholder = model.get("placeholder"); };
  box.addEventListener("keydown", onKey);
  send.addEventListener("click", submit);
  model.on("change:busy", busy);
  model.on("change:placeholder", placeholder);
  model.on("msg:custom", onMessage);
  busy();
  return () => {
    clearTimeout(hintTimer);
    model.off("change:busy", busy);
    model.off("change:placeholder", placeholder);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
