// The live console: Server-Sent Events from /live, plain DOM, no external requests.
"use strict";

const $ = (id) => document.getElementById(id);
const history = new Map();  // "stream/track" -> recent statistics, for the sparklines
const alerts = new Map();   // alert id -> summary
const HISTORY = 90;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

function verdict(v) {
  return el("span", { class: `verdict v-${v || "none"}` }, (v || "–").replaceAll("_", " "));
}

function ago(seconds) {
  if (!seconds) return "–";
  const d = Date.now() / 1000 - seconds;
  if (d < 60) return `${Math.max(0, Math.round(d))} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  return new Date(seconds * 1000).toLocaleString();
}

function sparkline(values, threshold) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  const y = (p) => (30 - p * 28 - 1).toFixed(1);
  if (threshold != null) {
    const line = document.createElementNS(svg.namespaceURI, "line");
    Object.entries({ x1: 0, x2: 100, y1: y(threshold), y2: y(threshold), class: "limit" })
      .forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
  }
  const path = document.createElementNS(svg.namespaceURI, "polyline");
  const n = Math.max(values.length - 1, 1);
  path.setAttribute("points", values.map((v, i) => `${(i / n * 100).toFixed(1)},${y(v)}`).join(" "));
  path.setAttribute("class", "spark");
  svg.append(path);
  return svg;
}

function renderStreams(streams) {
  $("stream-count").textContent = `(${streams.length})`;
  const cards = streams.map((s) => {
    const tracks = Object.entries(s.tracks || {}).map(([id, t]) => {
      const key = `${s.id}/${id}`;
      const values = history.get(key) || [];
      if (t.statistic != null) values.push(t.statistic);
      while (values.length > HISTORY) values.shift();
      history.set(key, values);
      return el("div", { class: "track" }, `track ${id}`, sparkline(values, s.thresholds?.suspicious),
        t.statistic == null ? "–" : Number(t.statistic).toFixed(3));
    });
    return el("div", { class: "card stream", "data-stream": s.id },
      el("h3", {}, el("code", {}, s.id), verdict(s.verdict)),
      el("div", { class: "meta" },
        el("span", { class: `state state-${s.state}` }, (s.state || "").replaceAll("_", " ") + (s.reason ? ` (${s.reason})` : "")),
        el("span", {}, `${Number(s.fps || 0).toFixed(1)} fps`),
        el("span", {}, `link ${s.connection_quality || "–"}`),
        s.instance ? el("span", {}, s.instance) : ""),
      ...tracks);
  });
  $("streams").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "No streams.")]));
}

function summarize(event) {  // an alert event as the list shows it (as the server's summary)
  const times = event.times || {};
  return {
    alert_id: event.alert_id, stream_id: event.stream_id, track_id: event.track_id,
    status: event.type === "closed" ? "closed" : "open", verdict: event.verdict, peak_verdict: event.peak_verdict,
    close_reason: event.close_reason, statistic: event.statistic?.value, opened_at: times.opened_at,
    updated_at: times.published_at, crops: (event.evidence?.crops || []).length, log_id: event.seq,
  };
}

function renderAlerts() {
  const all = [...alerts.values()].sort((a, b) => (b.updated_at || 0) - (a.updated_at || 0));
  const open = all.filter((a) => a.status === "open");
  $("open-count").textContent = `(${open.length})`;
  const cards = open.map((a) => {
    const crops = Array.from({ length: a.crops }, (_, i) =>
      el("img", { src: `/alerts/${a.alert_id}/crops/${i}.jpg?v=${a.log_id}`, alt: `crop ${i}`, loading: "lazy" }));
    return el("div", { class: `alert ${a.peak_verdict}`, "data-alert": a.alert_id },
      el("h3", {}, el("code", {}, a.stream_id), ` track ${a.track_id} `, verdict(a.verdict)),
      el("div", { class: "meta" }, el("span", {}, `score ${a.statistic == null ? "–" : a.statistic.toFixed(3)}`),
        el("span", {}, `opened ${ago(a.opened_at)}`),
        el("a", { href: `/alerts/${a.alert_id}/report.html`, target: "_blank" }, "report")),
      el("div", { class: "crops" }, ...crops));
  });
  $("open-alerts").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "None.")]));
  const rows = all.slice(0, 40).map((a) => el("tr", {},
    el("td", {}, ago(a.updated_at)), el("td", {}, el("code", {}, a.stream_id)), el("td", {}, a.track_id ?? "–"),
    el("td", {}, verdict(a.peak_verdict)), el("td", {}, a.status + (a.close_reason ? ` (${a.close_reason})` : "")),
    el("td", {}, a.statistic == null ? "–" : a.statistic.toFixed(3)),
    el("td", {}, el("a", { href: `/alerts/${a.alert_id}/report.html`, target: "_blank" }, "report"))));
  $("recent").tBodies[0].replaceChildren(...rows);
}

function connect() {
  const feed = new EventSource("/live");
  feed.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    $("instance").textContent = data.instance ? `· ${data.instance}` : "";
    alerts.clear();
    data.alerts.forEach((a) => alerts.set(a.alert_id, a));
    renderStreams(data.streams);
    renderAlerts();
  });
  feed.addEventListener("streams", (e) => renderStreams(JSON.parse(e.data)));
  feed.addEventListener("alert", (e) => {
    const event = JSON.parse(e.data);
    if (!event.alert_id) return;  // a drift event: about a stream, not an alert
    const a = summarize(event);
    alerts.set(a.alert_id, a);
    renderAlerts();
  });
  feed.onopen = () => { $("live").textContent = "live"; $("live").className = "pill on"; };
  feed.onerror = async () => {
    $("live").textContent = "reconnecting…";
    $("live").className = "pill off";
    const check = await fetch("/streams", { method: "HEAD" }).catch(() => null);
    if (check && check.status === 401) location.href = "/login";  // the session ended
  };
}

connect();
setInterval(renderAlerts, 15000);  // keep the "ago" times fresh
