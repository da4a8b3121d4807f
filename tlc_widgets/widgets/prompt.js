// The prompt box: a textarea and a Send button. Enter sends, Shift+Enter starts a new line
// (an ipywidgets Textarea cannot tell the two apart, which is why this is an anywidget).
// Sending is one custom message, {k: "submit", text}; nothing is synced while typing.

function render({ model, el }) {
  el.classList.add("tlc-prompt");
  const box = document.createElement("textarea");
  box.className = "tlc-prompt-input";
  box.rows = 2;
  box.placeholder = model.get("placeholder");
  box.setAttribute("aria-label", "Prompt");
  const send = document.createElement("button");
  send.className = "tlc-send";
  send.type = "button";
  send.textContent = "Send";
  send.title = "Send (Enter). Shift+Enter: new line.";
  el.append(box, send);

  function submit() {
    const text = box.value;
    if (!text.trim()) return;
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

  const busy = () => el.classList.toggle("tlc-busy", model.get("busy"));
  const placeholder = () => { box.placeholder = model.get("placeholder"); };
  box.addEventListener("keydown", onKey);
  send.addEventListener("click", submit);
  model.on("change:busy", busy);
  model.on("change:placeholder", placeholder);
  busy();
  return () => {
    model.off("change:busy", busy);
    model.off("change:placeholder", placeholder);
  };
}

export default { render };
