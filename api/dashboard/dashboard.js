// Backstop dashboard: REST for state, the event stream for live updates, inline SVG charts.
// No library and nothing loaded from elsewhere (the page's Content-Security-Policy forbids it).
(function () {
  "use strict";

  // The token arrives once in the page URL (a browser cannot send a header on a page load). It
  // is kept in sessionStorage for this tab and removed from the address bar and history.
  const params = new URLSearchParams(location.search);
  let token = params.get("token");
  if (token) {
    sessionStorage.setItem("backstop-token", token);
    history.replaceState(null, "", location.pathname);
  } else {
    token = sessionStorage.getItem("backstop-token");
  }
  if (!token) {
    document.getElementById("auth-error").hidden = false;
    return;
  }

  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return e;
  }
  function badge(text, kind) { return el("span", { class: "badge " + kind }, text); }
  const healthKind = { up: "good", degraded: "warn", down: "bad" };
  const circuitKind = { closed: "good", half_open: "warn", open: "bad" };
  const verificationKind = { verified: "good", pending: "warn", mismatch: "bad", missing: "bad", timeout: "bad" };
  function time(ts) { return ts ? ts.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    if (r.status === 401) {
      $("auth-error").hidden = false;
      $("auth-error").textContent = "The API refused the token (401): open the page again with the token in api.token_file.";
      throw new Error("unauthorized");
    }
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function fill(tbodyId, rows) {
    const body = document.querySelector("#" + tbodyId + " tbody");
    body.replaceChildren(...rows);
  }

  function renderBrokers(data) {
    fill("brokers", data.brokers.map((b) =>
      el("tr", { "data-broker": b.name },
        el("td", {}, b.name),
        el("td", {}, badge(b.state, healthKind[b.state] || "neutral")),
        el("td", {}, badge(b.circuit, circuitKind[b.circuit] || "neutral")),
        el("td", {}, b.connectivity || ""),
        el("td", {}, b.routes.map((r) => r.strategy + (r.current ? " (current)" : "")).join(", ")),
        el("td", { class: "num" }, b.working_orders),
        el("td", { class: "num" }, b.ghost_stops),
        el("td", { class: "num" }, b.divergences),
        el("td", { class: "muted" }, b.detail || ""))));
  }

  function renderOrders(data) {
    const orders = data.orders;
    $("orders-count").textContent = "(" + orders.length + ")";
    fill("orders", orders.slice().reverse().map((o) => {
      const since = o.timestamps[{ pre_sent: "created_at", pending: "sent_at" }[o.state] || o.state + "_at"] || "";
      return el("tr", { "data-order": o.client_order_id },
        el("td", {}, o.client_order_id),
        el("td", {}, o.broker),
        el("td", {}, o.strategy || ""),
        el("td", {}, o.symbol),
        el("td", {}, o.side),
        el("td", { class: "num" }, o.quantity),
        el("td", {}, o.type),
        el("td", { class: "num" }, o.limit_price || ""),
        el("td", { class: "num" }, o.stop_price || ""),
        el("td", {}, o.state),
        el("td", { class: "num" }, o.filled_quantity),
        el("td", {}, o.stop ? badge(o.stop.verification + (o.stop.ghost ? " / ghost" : ""),
                                    o.stop.ghost ? "bad" : verificationKind[o.stop.verification] || "neutral") : ""),
        el("td", { class: "muted" }, time(since)));
    }));
  }

  function renderStops(data) {
    // Each strategy has its own protection policy: name them all, not just the default.
    const policies = Object.entries(data.policies || {});
    $("stops-policy").textContent = policies.length === 0 ? "policy: " + data.policy
      : "policies: " + policies.map(([strategy, p]) => strategy + " " + p).join(", ");
    // Working stops, and any stop whose verification failed or that turned out a ghost.
    const stops = data.stops.filter((s) => s.order && (s.order.working || s.ghost ||
      ["mismatch", "missing", "timeout"].includes(s.verification))).slice(-50);
    fill("stops", stops.reverse().map((s) =>
      el("tr", { "data-stop": s.client_order_id },
        el("td", {}, s.client_order_id),
        el("td", {}, s.broker),
        el("td", {}, s.policy || ""),
        el("td", {}, s.order ? s.order.state : ""),
        el("td", {}, badge(s.verification, verificationKind[s.verification] || "neutral")),
        el("td", { class: "num" }, s.verifications),
        el("td", { class: "muted" }, time(s.verified_at)),
        el("td", { class: "muted" }, s.detail))));
    fill("ghosts", data.ghost_stops.slice(-20).reverse().map((g) =>
      el("tr", {},
        el("td", {}, g.client_order_id), el("td", {}, g.broker), el("td", { class: "num" }, g.stop_price),
        el("td", { class: "muted" }, time(g.crossed_at)), el("td", { class: "num" }, g.crossing_price),
        el("td", { class: "muted" }, time(g.declared_at)), el("td", {}, g.action))));
  }

  // ---- charts: grouped horizontal bars, one group per metric, one bar per broker.
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  // groups: [{label, values: {broker: number|null}}]; null draws "not recorded".
  function barChart(title, unit, brokers, groups, id) {
    const barH = 12, gap = 10, left = 150, width = 460, right = 60;
    const height = 30 + groups.length * (brokers.length * barH + gap) + 18;
    const max = niceMax(Math.max(0, ...groups.flatMap((g) => brokers.map((b) => g.values[b] || 0))));
    const s = svg("svg", { class: "chart", id: id, width: left + width + right, height: height, role: "img", "aria-label": title });
    s.append(svg("text", { x: 0, y: 14, class: "title" }, title + (unit ? " (" + unit + ")" : "")));
    for (let i = 0; i <= 4; i++) {
      const x = left + (width * i) / 4;
      s.append(svg("line", { x1: x, x2: x, y1: 22, y2: height - 16, class: "grid" }));
      s.append(svg("text", { x: x, y: height - 4, "text-anchor": "middle" }, fmtNum((max * i) / 4)));
    }
    let y = 26;
    for (const g of groups) {
      s.append(svg("text", { x: left - 6, y: y + (brokers.length * barH) / 2 + 4, "text-anchor": "end" }, g.label));
      brokers.forEach((b, i) => {
        const v = g.values[b];
        const w = v == null ? 0 : Math.max(1, (width * v) / max);
        const bar = svg("rect", { x: left, y: y, width: w, height: barH - 2, fill: PALETTE[i % PALETTE.length], "data-broker": b });
        bar.append(svg("title", {}, b + ": " + (v == null ? "not recorded" : fmtNum(v) + (unit ? " " + unit : ""))));
        s.append(bar);
        s.append(svg("text", { x: left + w + 4, y: y + barH - 3 }, v == null ? "n/r" : fmtNum(v)));
        y += barH;
      });
      y += gap;
    }
    s.append(svg("line", { x1: left, x2: left, y1: 22, y2: height - 16, class: "axis" }));
    return s;
  }
  function fmtNum(v) {
    if (v == null) return "n/r";
    if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v));
    if (Math.abs(v) < 1) return String(Number(v.toPrecision(2)));
    return v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
  }
  const ms = (ns) => (ns == null ? null : ns / 1e6);
  const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);

  function renderReliability(r) {
    const brokers = r.brokers;
    $("reliability-span").textContent = r.span ? time(r.span.from) + " to " + time(r.span.to) : "";
    const charts = $("reliability-charts");
    charts.replaceChildren();
    if (!brokers.length) {
      charts.append(el("p", { class: "muted" }, "No broker activity in the journal yet."));
      return;
    }
    const legend = el("div", { class: "legend" });
    brokers.forEach((b, i) => { legend.append(el("span", { style: "background:" + PALETTE[i % PALETTE.length] }), b); });
    charts.append(legend);
    const F = (b) => r.figures[b];
    const per = (f) => Object.fromEntries(brokers.map((b) => [b, f(F(b))]));
    charts.append(barChart("Submit → ack latency", "ms", brokers, [
      { label: "median", values: per((f) => ms(f.orders.submit_to_ack_ns.median)) },
      { label: "p95", values: per((f) => ms(f.orders.submit_to_ack_ns.p95)) },
      { label: "p99", values: per((f) => ms(f.orders.submit_to_ack_ns.p99)) },
    ], "chart-latency"));
    charts.append(barChart("Stops: ack → verified, fill latency", "ms", brokers, [
      { label: "ack→verified median", values: per((f) => ms(f.stops.ack_to_verified_ns.median)) },
      { label: "market fill median", values: per((f) => ms(f.market_orders.fill_latency_ns.median)) },
      { label: "cancel median", values: per((f) => ms(f.cancels.latency_ns.median)) },
    ], "chart-stops"));
    charts.append(barChart("Trouble", "count", brokers, [
      { label: "rejected", values: per((f) => f.orders.rejected) },
      { label: "unknown outcomes", values: per((f) => f.orders.unknown_outcomes) },
      { label: "verification failures", values: per((f) => sum(f.stops.verification_failures)) },
      { label: "ghost stops", values: per((f) => f.stops.ghost_stops) },
      { label: "divergences", values: per((f) => sum(f.divergences_by_kind)) },
      { label: "cancel failures", values: per((f) => f.cancels.failed) },
    ], "chart-trouble"));

    const rows = [
      ["orders created", (f) => f.orders.created],
      ["submit→ack median (ms)", (f) => fmtNum(ms(f.orders.submit_to_ack_ns.median))],
      ["submit→ack p95 (ms)", (f) => fmtNum(ms(f.orders.submit_to_ack_ns.p95))],
      ["rejected", (f) => f.orders.rejected],
      ["stops verified", (f) => f.stops.verified],
      ["ghost stops", (f) => f.stops.ghost_stops],
      ["divergences", (f) => sum(f.divergences_by_kind)],
      ["health changes", (f) => f.health.changes],
      ["circuit opens", (f) => f.health.circuit_opens],
    ];
    document.querySelector("#reliability thead").replaceChildren(el("tr", {}, el("th", {}, ""), ...brokers.map((b) => el("th", {}, b))));
    fill("reliability", rows.map(([label, f]) => el("tr", {}, el("td", {}, label), ...brokers.map((b) => el("td", { class: "num" }, f(F(b)))))));
    $("reliability-notes").textContent = r.not_recorded.length ? "Not recorded: " + r.not_recorded.join("; ") : "";
  }

  // ---- events
  const MAX_EVENTS = 200;
  function summary(type, d) {
    switch (type) {
      case "order": return d.client_order_id + " " + d.broker + " " + d.side + " " + d.quantity + " " + d.symbol + " " + d.type + " → " + d.state;
      case "fill": return d.client_order_id + " " + d.broker + " " + d.side + " " + d.quantity + " @ " + d.price;
      case "health": return d.broker + " " + d.from + " → " + d.to + " (circuit " + d.circuit + "): " + d.reason;
      case "divergence": return d.broker + " " + d.kind + " " + (d.client_order_id || "") + " " + d.detail;
      case "ghost_stop": return d.client_order_id + " " + d.broker + " stop " + d.stop_price + " crossed at " + d.crossing_price + ": " + d.action;
      case "stop": return d.client_order_id + " " + d.broker + " verification " + d.verification + (d.detail ? ": " + d.detail : "");
      default: return JSON.stringify(d);
    }
  }
  function addEvent(id, type, data) {
    const list = $("events");
    const li = el("li", { value: id, "data-type": type }, el("span", { class: "type" }, type), summary(type, data));
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  // ---- refresh
  let pending = null;
  async function refreshState() {
    pending = null;
    try {
      const [brokers, orders, stops] = await Promise.all([api("/api/v1/brokers"), api("/api/v1/orders?state=working&limit=200"), api("/api/v1/stops")]);
      renderBrokers(brokers);
      renderOrders(orders);
      renderStops(stops);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) { console.warn(e); }
  }
  function scheduleRefresh() { if (!pending) pending = setTimeout(refreshState, 300); }
  async function refreshReliability() {
    try { renderReliability(await api("/api/v1/reliability")); } catch (e) { console.warn(e); }
  }

  function connect() {
    // EventSource cannot send headers: the stream route alone accepts ?token=. last_event_id=0
    // replays the server's recent buffer; on reconnect the browser sends Last-Event-ID itself.
    const es = new EventSource("/api/v1/events?last_event_id=0&token=" + encodeURIComponent(token));
    const status = $("stream-status");
    es.onopen = () => { status.textContent = "stream: live"; status.className = "badge good"; };
    es.onerror = () => { status.textContent = "stream: reconnecting"; status.className = "badge bad"; };
    for (const type of ["order", "fill", "health", "divergence", "ghost_stop", "stop", "gap"]) {
      es.addEventListener(type, (ev) => {
        addEvent(ev.lastEventId, type, JSON.parse(ev.data));
        scheduleRefresh();
      });
    }
  }

  refreshState();
  refreshReliability();
  connect();
  setInterval(refreshReliability, 5000);
  setInterval(refreshState, 5000);  // health checks change "detail" and times without events
})();
