// QueueMonitor: big numbers from the `snapshot` trait, and a chart of queue length and
// tokens/s over the last `window_s` seconds. Each snapshot change adds one point; the
// history comes once, in answer to {k: "sync"} when this view appears.

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 120;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

const fmt = {
  int: (v) => (v === null || v === undefined ? "–" : String(v)),
  secs: (v) => (v === null || v === undefined ? "–" : v < 10 ? `${v.toFixed(1)} s` : `${Math.round(v)} s`),
  rate: (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) : String(Math.round(v))),
};

function slotsOf(upstream) {
  const s = upstream.slots;
  if (typeof s === "number") return s;
  if (s && typeof s === "object") return Object.values(s).reduce((a, b) => Math.max(a, b), 0);
  return 0;
}

// A step line: each value holds until the next point, the last one until now.
function steps(points, index, t0, window, max) {
  if (!points.length) return "";
  const x = (t) => ((t - t0) / window) * W;
  const y = (v) => H - 4 - (v / (max || 1)) * (H - 12);
  const out = [];
  let last = null;
  for (const p of points) {
    const px = Math.max(0, x(p[0]));
    if (last !== null) out.push(`${px.toFixed(1)},${y(last).toFixed(1)}`);
    out.push(`${px.toFixed(1)},${y(p[index]).toFixed(1)}`);
    last = p[index];
  }
  out.push(`${W},${y(last).toFixed(1)}`);
  return out.join(" ");
}

function render({ model, el: root }) {
  root.classList.add("tlc-monitor");
  const message = el("div", "tlc-monitor-message");
  const big = el("div", "tlc-big");
  const stats = {};
  for (const [key, label] of [["waiting", "waiting"], ["running", "running"],
    ["served", "served"], ["mean_wait_s", "mean wait"], ["tokens_per_s", "tokens/s"]]) {
    const box = el("div", "tlc-stat");
    stats[key] = el("div", "tlc-num", "–");
    box.append(stats[key], el("div", "tlc-label", label));
    big.append(box);
  }
  const upstreams = el("table", "tlc-upstreams");
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "tlc-chart" });
  const queueLine = svg("polyline", { class: "tlc-line-queue", fill: "none" });
  const rateLine = svg("polyline", { class: "tlc-line-rate", fill: "none" });
  chart.append(svg("line", { x1: 0, y1: H - 4, x2: W, y2: H - 4, class: "tlc-axis" }), queueLine, rateLine);
  const legend = el("div", "tlc-legend");
  root.append(message, big, upstreams, chart, legend);
  let points = [];

  function drawNumbers() {
    const s = model.get("snapshot") || {};
    stats.waiting.textContent = fmt.int(s.waiting);
    stats.running.textContent = fmt.int(s.running);
    stats.served.textContent = fmt.int(s.served);
    stats.mean_wait_s.textContent = fmt.secs(s.mean_wait_s);
    stats.tokens_per_s.textContent = fmt.rate(s.tokens_per_s);
    const text = model.get("message");
    const rows = (s.upstreams || []).map((u) => {
      const tr = el("tr");
      // With the queue server gone, its last word about an upstream is stale: no green dot.
      const state = text ? "unknown" : u.reachable ? "up" : "down";
      const dot = el("td", `tlc-${state}`, { up: "●", down: "○", unknown: "◌" }[state]);
      dot.title = {
        up: "answering",
        down: "not answering",
        unknown: "unknown: the queue server itself does not answer",
      }[state];
      const slots = slotsOf(u);
      const busy = el("td", "tlc-busy", `${u.busy ?? 0} / ${slots} busy`);
      // A model being loaded (once, for everyone waiting) says how far the load is.
      const loading = s.loading || {};
      const models = (u.models || []).map((m) =>
        m in loading ? `${m} (loading ${Math.round(loading[m] * 100)} %)` : m);
      tr.append(dot, el("td", "tlc-url", u.url), busy, el("td", "tlc-models", models.join(", ")));
      return tr;
    });
    upstreams.replaceChildren(...rows);
    message.textContent = text;
    message.hidden = !text;
    root.classList.toggle("tlc-offline", Boolean(text));
  }

  function drawChart() {
    const now = Date.now() / 1000;
    // Span the data we have (at least a minute), up to window_s: a fresh monitor's chart
    // is not a sliver at the right edge.
    const first = points.length ? points[0][0] : now;
    const window = Math.min(model.get("window_s") || 300, Math.max(60, now - first));
    const t0 = now - window;
    const horizon = now - 2 * (model.get("window_s") || 300);
    points = points.filter((p) => p[0] >= horizon); // forget what can never be shown again
    const visible = points.filter((p) => p[0] >= t0);
    const before = points.filter((p) => p[0] < t0).slice(-1).map((p) => [t0, ...p.slice(1)]);
    const shown = [...before, ...visible];
    const maxQueue = Math.max(1, ...shown.map((p) => p[1]));
    const maxRate = Math.max(1, ...shown.map((p) => p[3]));
    queueLine.setAttribute("points", steps(shown, 1, t0, window, maxQueue));
    rateLine.setAttribute("points", steps(shown, 3, t0, window, maxRate));
    legend.replaceChildren(
      el("span", "tlc-key-queue", `━ queue length (max ${maxQueue})`),
      el("span", "tlc-key-rate", `━ tokens/s (max ${Math.round(maxRate)})`),
      el("span", "tlc-key-window", window < 120 ? `last ${Math.round(window)} s` : `last ${Math.round(window / 60)} min`),
    );
  }

  function onSnapshot() {
    const s = model.get("snapshot") || {};
    if (typeof s.t === "number") points.push([s.t, s.waiting || 0, s.running || 0, s.tokens_per_s || 0]);
    drawNumbers();
    drawChart();
  }

  function onMessage(msg) {
    if (msg && msg.k === "history" && Array.isArray(msg.s)) {
      points = msg.s;
      drawChart();
    }
  }

  model.on("change:snapshot", onSnapshot);
  model.on("change:message", drawNumbers);
  model.on("msg:custom", onMessage);
  const timer = setInterval(drawChart, 1000); // time moves on even when the queue does not
  drawNumbers();
  drawChart();
  model.send({ k: "sync" });
  return () => {
    clearInterval(timer);
    model.off("change:snapshot", onSnapshot);
    model.off("change:message", drawNumbers);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
