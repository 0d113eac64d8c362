// agentcost dashboard: fetches the JSON API of the server that served it and draws everything with DOM calls.
//
// Every name, attribute value, model and note comes from the ledger and is untrusted: it is only ever set with
// textContent (or as the text of an SVG <title>). Nothing here parses markup, sets inline styles or inline event
// handlers, and no untrusted value is put in an attribute: the page runs under a strict Content-Security-Policy.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const RUN_ID = /^[0-9a-f]{16}$/;
  const PALETTE = 10;
  let summary = null;

  // ---- DOM helpers -------------------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function tooltip(node, text) {
    const title = document.createElementNS(SVG, "title");
    title.textContent = text;
    node.appendChild(title);
    return node;
  }

  function svgText(parent, x, y, text, className) {
    const node = svg("text", { x: x, y: y, class: className || "" }, parent);
    node.textContent = text;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  // ---- formatting: money stays a decimal string (exact), numbers are only for geometry ------------------------

  function usd(amount) {
    if (amount === null || amount === undefined) return "unpriced";
    let text = String(amount);
    const negative = text.startsWith("-");
    if (negative) text = text.slice(1);
    const parts = text.split(".");
    const whole = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    let fraction = parts.length > 1 ? parts[1] : "";
    if (fraction.length < 2) fraction = (fraction + "00").slice(0, 2);
    return (negative ? "-$" : "$") + whole + "." + fraction;
  }

  function axisUsd(value) {
    if (value === 0) return "$0";
    if (value >= 1e6) return "$" + (value / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (value >= 1e3) return "$" + (value / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    if (value >= 1) return "$" + value.toFixed(value >= 10 ? 0 : 2).replace(/\.00$/, "");
    return "$" + value.toPrecision(2);
  }

  function num(amount) {
    const value = Number(amount);
    return Number.isFinite(value) ? value : 0;
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function label(key, none) {
    return key === null || key === undefined ? none : String(key);
  }

  function short(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function dayLabel(day) {
    return day.slice(5); // MM-DD
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace("Z", " UTC") : "";
  }

  function niceMax(value) {
    // the top of a y axis with four gridlines at round amounts (4 x a round step)
    if (!(value > 0)) return 1;
    const raw = value / 4;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const step of [1, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
      if (step * power >= raw) return 4 * step * power;
    }
    return 40 * power;
  }

  function dayNumber(iso) {
    return Math.round(Date.parse(iso + "T00:00:00Z") / 86400000);
  }

  // ---- chart frame ---------------------------------------------------------------------------------------------

  function frame(container, width, height, yMax, margin) {
    const m = margin || { top: 14, right: 16, bottom: 26, left: 56 };
    const root = svg("svg", {
      viewBox: "0 0 " + width + " " + height,
      class: "chart-svg",
      role: "img",
      preserveAspectRatio: "xMidYMid meet",
    });
    container.appendChild(root);
    const plot = { root: root, left: m.left, right: width - m.right, top: m.top, bottom: height - m.bottom };
    plot.y = (value) => plot.bottom - (value / yMax) * (plot.bottom - plot.top);
    const grid = svg("g", { class: "grid" }, root);
    for (let i = 0; i <= 4; i++) {
      const value = (yMax * i) / 4;
      const y = plot.y(value);
      svg("line", { x1: plot.left, x2: plot.right, y1: y, y2: y, class: i === 0 ? "axis" : "gridline" }, grid);
      svgText(grid, plot.left - 6, y + 4, axisUsd(value), "tick tick-y");
    }
    return plot;
  }

  function xTicks(plot, days, xOf) {
    const group = svg("g", { class: "x-ticks" }, plot.root);
    const every = Math.max(1, Math.ceil(days.length / 8));
    const last = days.length - 1;
    days.forEach((day, i) => {
      const regular = i % every === 0 && (i === last || last - i >= every * 0.8);
      if (regular || i === last) svgText(group, xOf(i), plot.bottom + 16, dayLabel(day), "tick tick-x");
    });
  }

  function polyline(parent, points, className) {
    if (points.length === 0) return null;
    return svg("polyline", { points: points.map((p) => p[0].toFixed(2) + "," + p[1].toFixed(2)).join(" "), class: className }, parent);
  }

  function headers(table, text, numeric) {
    const row = table.appendChild(el("thead")).appendChild(el("tr"));
    for (const name of text) row.appendChild(el("th", null, name));
    for (const name of numeric) row.appendChild(el("th", "num", name));
  }

  function rate(amount) {
    return "$" + num(amount).toFixed(2) + "/day"; // an estimate: cents are enough
  }

  function empty(container, message) {
    container.appendChild(el("p", "empty", message));
  }

  // ---- overview ----------------------------------------------------------------------------------------------

  function card(parent, title, value, detail) {
    const box = el("div", "card");
    box.appendChild(el("div", "card-title", title));
    box.appendChild(el("div", "card-value", value));
    if (detail) box.appendChild(el("div", "card-detail", detail));
    parent.appendChild(box);
  }

  function renderCards(data) {
    const cards = clear($("cards"));
    const unpriced = data.unpriced ? " + " + data.unpriced + " unpriced" : "";
    card(cards, "Spend, last " + plural(data.days, "day"), usd(data.total), plural(data.calls, "call") + unpriced);
    const f = data.forecast;
    card(cards, "Forecast " + f.month, usd(f.expected), Math.round(f.level * 100) + "% band " + usd(f.low) + " – " + usd(f.high));
    if (data.budget) {
      const b = data.budget;
      card(cards, "Budget left", usd(b.remaining), Math.round(b.used * 100) + "% of " + usd(b.budget) + " used");
      card(cards, "Runs out", b.runs_out_on || "not at this pace", "burning " + rate(b.burn_rate));
    } else {
      card(cards, "Month to date", usd(f.spent), plural(f.days_left, "day") + " left");
    }
    card(cards, "Anomalies", String(data.anomalies.length), data.anomalies.length ? "team-days above baseline" : "none flagged");
  }

  function seriesName(series) {
    if (series.other) return "other teams (" + series.teams + ")";
    return label(series.key, "(no team)");
  }

  function renderTimeChart(data) {
    const container = clear($("chart-time"));
    const legend = clear($("legend-time"));
    const daily = data.daily;
    const f = data.forecast;
    const future = f.future_days.filter((day) => day > data.end).slice(0, Math.max(7, daily.days.length));
    const days = daily.days.concat(future);
    if (daily.series.length === 0) empty(container, "No spend recorded in this period.");
    const totals = daily.totals.map(num);
    let top = Math.max(0, ...totals);
    if (future.length) top = Math.max(top, num(f.daily_high), num(f.daily_mean));
    const yMax = niceMax(top * 1.08);
    const width = 980;
    const plot = frame(container, width, 300, yMax);
    const step = (plot.right - plot.left) / days.length;
    const xOf = (i) => plot.left + step * (i + 0.5);
    const barWidth = Math.max(1, step * 0.78);
    const stacked = new Array(daily.days.length).fill(0);
    const bars = svg("g", { class: "bars" }, plot.root);
    daily.series.forEach((series, index) => {
      const group = svg("g", { class: "series s" + (index % PALETTE) }, bars);
      const name = seriesName(series);
      series.values.forEach((value, i) => {
        const amount = num(value);
        if (amount <= 0) return;
        const y0 = plot.y(stacked[i]);
        stacked[i] += amount;
        const y1 = plot.y(stacked[i]);
        const rect = svg("rect", { x: xOf(i) - barWidth / 2, y: y1, width: barWidth, height: Math.max(0.5, y0 - y1), class: "bar" }, group);
        tooltip(rect, name + ": " + usd(value) + " on " + daily.days[i]);
      });
      const item = el("span", "legend-item");
      item.appendChild(el("span", "swatch s" + (index % PALETTE)));
      item.appendChild(el("span", "legend-name", name));
      item.appendChild(el("span", "legend-value", usd(series.total) + (series.unpriced ? " +" + series.unpriced + " unpriced" : "")));
      legend.appendChild(item);
    });
    if (future.length) {
      const group = svg("g", { class: "forecast" }, plot.root);
      const first = daily.days.length;
      const xs = future.map((_, k) => xOf(first + k));
      const left = xs[0] - step / 2;
      const right = xs[xs.length - 1] + step / 2;
      const band = svg("rect", {
        x: left,
        y: plot.y(num(f.daily_high)),
        width: right - left,
        height: Math.max(0.5, plot.y(num(f.daily_low)) - plot.y(num(f.daily_high))),
        class: "forecast-band",
      }, group);
      tooltip(band, "forecast: one day's spend, " + Math.round(f.level * 100) + "% band " + usd(f.daily_low) + " – " + usd(f.daily_high));
      const line = svg("line", { x1: left, x2: right, y1: plot.y(num(f.daily_mean)), y2: plot.y(num(f.daily_mean)), class: "forecast-line" }, group);
      tooltip(line, "forecast: " + usd(f.daily_mean) + " per day (trailing mean)");
      svg("line", { x1: left, x2: left, y1: plot.top, y2: plot.bottom, class: "today-line" }, group);
      svgText(group, left + 4, plot.top + 10, "forecast", "chart-note");
    }
    const markers = svg("g", { class: "anomalies" }, plot.root);
    const seen = {};
    data.anomalies.forEach((anomaly) => {
      const i = daily.days.indexOf(anomaly.day);
      if (i < 0) return;
      const nth = (seen[i] = (seen[i] || 0) + 1) - 1;
      const x = xOf(i);
      const y = plot.y(stacked[i]) - 6 - nth * 11;
      const index = daily.series.findIndex((s) => !s.other && s.key === anomaly.key);
      const marker = svg("path", {
        d: "M" + x + "," + (y - 8) + " l5,8 l-10,0 z",
        class: "anomaly-marker " + (index >= 0 ? "s" + (index % PALETTE) : "s-other"),
      }, markers);
      const times = anomaly.ratio === null ? "new spend" : anomaly.ratio.toFixed(1) + "× its baseline " + usd(anomaly.baseline);
      tooltip(marker, "anomaly: " + label(anomaly.key, "(no team)") + " spent " + usd(anomaly.cost) + " on " + anomaly.day + ", " + times);
    });
    xTicks(plot, days, xOf);
  }

  function renderForecast(data) {
    const container = clear($("chart-forecast"));
    const f = data.forecast;
    $("forecast-note").textContent = f.month + ", as of " + f.as_of;
    const start = dayNumber(f.month_start);
    const days = [];
    for (let d = start; d <= dayNumber(f.month_end); d++) days.push(new Date(d * 86400000).toISOString().slice(0, 10));
    const top = Math.max(num(f.high), num(f.spent), num(f.expected));
    const plot = frame(container, 480, 240, niceMax(top * 1.08));
    const step = (plot.right - plot.left) / Math.max(1, days.length - 1);
    const xOf = (day) => plot.left + step * (dayNumber(day) - start);
    const group = svg("g", { class: "forecast" }, plot.root);
    if (f.path.length > 1) {
      const upper = f.path.map((p) => [xOf(p.day), plot.y(num(p.high))]);
      const lower = f.path.map((p) => [xOf(p.day), plot.y(num(p.low))]).reverse();
      const band = svg("polygon", { points: upper.concat(lower).map((p) => p[0].toFixed(2) + "," + p[1].toFixed(2)).join(" "), class: "forecast-band" }, group);
      tooltip(band, Math.round(f.level * 100) + "% band for the month: " + usd(f.low) + " – " + usd(f.high));
      const line = polyline(group, f.path.map((p) => [xOf(p.day), plot.y(num(p.expected))]), "forecast-line");
      tooltip(line, "expected: " + usd(f.expected));
      const last = f.path[f.path.length - 1];
      svgText(group, xOf(last.day) - 4, plot.y(num(last.expected)) - 6, usd(f.expected), "chart-note end");
    }
    const actual = polyline(group, f.cumulative.map((p) => [xOf(p.day), plot.y(num(p.cumulative))]), "actual-line");
    if (actual) tooltip(actual, "spent so far: " + usd(f.spent));
    f.cumulative.forEach((p) => {
      tooltip(svg("circle", { cx: xOf(p.day), cy: plot.y(num(p.cumulative)), r: 2.2, class: "actual-dot" }, group), p.day + ": " + usd(p.cost) + ", " + usd(p.cumulative) + " so far");
    });
    xTicks(plot, days, (i) => plot.left + step * i);
    container.appendChild(
      el("p", "chart-caption", usd(f.spent) + " spent, " + usd(f.expected) + " expected (" + Math.round(f.level * 100) + "%: " + usd(f.low) + " – " + usd(f.high) + "), " + plural(f.days_left, "day") + " left"),
    );
  }

  function renderBudget(data) {
    const container = clear($("chart-budget"));
    const b = data.budget;
    const note = $("budget-note");
    if (!b) {
      note.textContent = "";
      empty(container, "No budget set: pass budget= to serve_dashboard (or --budget) to draw the burn-down.");
      return;
    }
    note.textContent = "monthly budget " + usd(b.budget);
    const start = dayNumber(b.start);
    const days = [];
    for (let d = start; d <= dayNumber(b.end); d++) days.push(new Date(d * 86400000).toISOString().slice(0, 10));
    const peak = Math.max(num(b.budget), num(b.spent), ...b.projection.map((p) => num(p.cumulative)));
    const plot = frame(container, 480, 240, niceMax(peak * 1.05));
    const step = (plot.right - plot.left) / Math.max(1, days.length - 1);
    const xOf = (day) => plot.left + step * (dayNumber(day) - start);
    const group = svg("g", { class: "burndown" }, plot.root);
    const limit = svg("line", { x1: plot.left, x2: plot.right, y1: plot.y(num(b.budget)), y2: plot.y(num(b.budget)), class: "budget-line" }, group);
    tooltip(limit, "budget: " + usd(b.budget));
    svgText(group, plot.left + 4, plot.y(num(b.budget)) - 5, "budget " + usd(b.budget), "chart-note");
    const projected = polyline(group, b.projection.map((p) => [xOf(p.day), plot.y(num(p.cumulative))]), "projection-line");
    if (projected) tooltip(projected, "at " + rate(b.burn_rate));
    const actual = polyline(group, b.cumulative.map((p) => [xOf(p.day), plot.y(num(p.cumulative))]), "actual-line");
    if (actual) tooltip(actual, "spent: " + usd(b.spent));
    if (b.runs_out_on && b.runs_out_on <= b.end) {
      const x = xOf(b.runs_out_on);
      svg("line", { x1: x, x2: x, y1: plot.top, y2: plot.bottom, class: "runs-out-line" }, group);
      svgText(group, x - 4, plot.top + 10, "runs out " + b.runs_out_on, "chart-note end warn");
    }
    xTicks(plot, days, (i) => plot.left + step * i);
    const out = b.runs_out_on ? "runs out on " + b.runs_out_on : "does not run out at this pace";
    container.appendChild(el("p", "chart-caption", usd(b.spent) + " of " + usd(b.budget) + " spent, " + rate(b.burn_rate) + ": " + out));
  }

  function renderBars(id, rows, none) {
    const container = clear($(id));
    if (rows.length === 0) {
      empty(container, "No spend recorded in this period.");
      return;
    }
    const shown = rows.slice(0, 12);
    const rowHeight = 24;
    const width = 480;
    const height = shown.length * rowHeight + 8;
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart-svg bars-h", role: "img" });
    container.appendChild(root);
    const left = 170;
    const right = width - 110;
    const top = Math.max(...shown.map((row) => num(row.cost)), 0) || 1;
    shown.forEach((row, i) => {
      const y = 4 + i * rowHeight;
      const name = label(row.key, none);
      const group = svg("g", { class: "bar-row" }, root);
      tooltip(svgText(group, left - 8, y + 16, short(name, 26), "bar-label"), name);
      const w = Math.max(num(row.cost) > 0 ? 1 : 0, ((right - left) * num(row.cost)) / top);
      const rect = svg("rect", { x: left, y: y + 3, width: w, height: rowHeight - 8, class: "bar s" + (i % PALETTE) }, group);
      tooltip(rect, name + ": " + usd(row.cost) + ", " + plural(row.calls, "call") + (row.unpriced ? ", " + row.unpriced + " unpriced" : ""));
      svgText(group, left + w + 6, y + 16, usd(row.cost) + (row.unpriced ? " +" + row.unpriced + "?" : ""), "bar-value");
    });
    if (rows.length > shown.length) container.appendChild(el("p", "chart-caption", "and " + (rows.length - shown.length) + " more"));
  }

  function go(runId) {
    if (RUN_ID.test(runId)) location.hash = "run=" + runId;
  }

  function renderTopRuns(data) {
    const container = clear($("top-runs"));
    if (data.top_runs.length === 0) {
      empty(container, "No runs in this period.");
      return;
    }
    const table = el("table", "runs");
    headers(table, ["Run", "Team", "Feature", "Started", "Status"], ["Spans", "Cost"]);
    const body = table.appendChild(el("tbody"));
    data.top_runs.forEach((run) => {
      const row = el("tr", "run-row");
      const cell = row.appendChild(el("td"));
      const button = cell.appendChild(el("button", "link run-link", run.name));
      button.type = "button";
      button.addEventListener("click", () => go(run.run_id));
      row.addEventListener("click", (event) => {
        if (event.target === row || event.target.tagName === "TD") go(run.run_id);
      });
      row.appendChild(el("td", null, label(run.attrs.team, "")));
      row.appendChild(el("td", null, label(run.attrs.feature, "")));
      row.appendChild(el("td", "muted", when(run.started_at)));
      row.appendChild(el("td", "status-" + (/^[a-z]+$/.test(run.status) ? run.status : "other"), run.status));
      row.appendChild(el("td", "num", String(run.spans)));
      row.appendChild(el("td", "num money", usd(run.cost) + (run.unpriced ? " +" + run.unpriced + " unpriced" : "")));
      body.appendChild(row);
    });
    container.appendChild(table);
  }

  function renderAnomalies(data) {
    const container = clear($("anomalies"));
    if (data.anomalies.length === 0) {
      empty(container, "No anomalies: no team's daily spend stood out from its trailing baseline.");
      return;
    }
    const table = el("table", "anomaly-table");
    headers(table, ["Day", "Team"], ["Spend", "Baseline", "Ratio", "z-score"]);
    const body = table.appendChild(el("tbody"));
    data.anomalies.forEach((anomaly) => {
      const row = body.appendChild(el("tr"));
      row.appendChild(el("td", null, anomaly.day));
      row.appendChild(el("td", null, label(anomaly.key, "(no team)")));
      row.appendChild(el("td", "num money", usd(anomaly.cost)));
      row.appendChild(el("td", "num money", usd(anomaly.baseline)));
      row.appendChild(el("td", "num", anomaly.ratio === null ? "new" : anomaly.ratio.toFixed(1) + "×"));
      row.appendChild(el("td", "num", anomaly.zscore.toFixed(1)));
    });
    container.appendChild(table);
  }

  function renderOverview(data) {
    $("period").textContent = data.start + " – " + data.end + " (UTC)";
    renderCards(data);
    renderTimeChart(data);
    renderForecast(data);
    renderBudget(data);
    renderBars("chart-feature", data.by_feature, "(no feature)");
    renderBars("chart-model", data.by_model, "(no model)");
    renderTopRuns(data);
    renderAnomalies(data);
  }

  // ---- drill-down --------------------------------------------------------------------------------------------

  function chips(parent, attrs) {
    const keys = Object.keys(attrs).sort();
    if (keys.length === 0) return;
    const list = parent.appendChild(el("span", "chips"));
    for (const key of keys) list.appendChild(el("span", "chip", key + "=" + attrs[key]));
  }

  function renderRun(run) {
    const container = clear($("run"));
    const header = container.appendChild(el("div", "run-header"));
    header.appendChild(el("h2", "run-name", run.name));
    const meta = header.appendChild(el("p", "run-meta"));
    meta.appendChild(el("span", "mono", run.run_id));
    meta.appendChild(el("span", null, " · " + run.status + " · " + when(run.started_at) + " · " + plural(run.spans, "span")));
    const total = header.appendChild(el("p", "run-total"));
    total.appendChild(el("span", "card-value", usd(run.total_cost)));
    if (run.total_unpriced) total.appendChild(el("span", "unpriced", " + " + run.total_unpriced + " unpriced"));
    const attrs = header.appendChild(el("p", "run-attrs"));
    chips(attrs, run.attrs);

    if (run.events.length) {
      const events = container.appendChild(el("div", "events"));
      events.appendChild(el("h3", null, "Budget events"));
      const list = events.appendChild(el("ul", "event-list"));
      for (const event of run.events) {
        const item = list.appendChild(el("li", "event event-" + (/^[a-z]+$/.test(event.kind) ? event.kind : "other")));
        item.appendChild(el("span", "badge", event.kind));
        item.appendChild(el("span", null, " " + event.node + ": " + event.detail));
      }
    }

    const table = container.appendChild(el("table", "tree"));
    headers(table, ["Node"], ["Self", "Inclusive", "Unpriced", "Status"]);
    const body = table.appendChild(el("tbody"));
    const stack = [[run.root, 0]];
    while (stack.length) {
      const [node, depth] = stack.pop();
      const row = body.appendChild(el("tr", "tree-row kind-" + (/^[a-z]+$/.test(node.kind) ? node.kind : "other") + (node.degraded ? " degraded" : "")));
      const cell = row.appendChild(el("td", "node depth-" + Math.min(depth, 16)));
      const line = cell.appendChild(el("div", "node-line"));
      line.appendChild(el("span", "badge kind", node.kind));
      line.appendChild(el("span", "node-name", node.name));
      if (node.model && node.model !== node.name) line.appendChild(el("span", "node-model", node.model));
      if (node.requested_model) line.appendChild(el("span", "node-model requested", "asked for " + node.requested_model));
      if (node.cost_source) line.appendChild(el("span", "muted small", node.cost_source));
      chips(line, node.own_attrs);
      if (node.notes.length || node.error) {
        const notes = cell.appendChild(el("ul", "notes"));
        for (const note of node.notes) notes.appendChild(el("li", "note", note));
        if (node.error) notes.appendChild(el("li", "note error", "error: " + node.error));
      }
      row.appendChild(el("td", "num money self", node.cost === null ? "unpriced" : usd(node.cost)));
      row.appendChild(el("td", "num money inclusive", usd(node.total_cost)));
      row.appendChild(el("td", "num", node.total_unpriced ? String(node.total_unpriced) : ""));
      row.appendChild(el("td", "status status-" + (/^[a-z]+$/.test(node.status) ? node.status : "other"), node.status));
      for (let i = node.children.length - 1; i >= 0; i--) stack.push([node.children[i], depth + 1]);
    }
  }

  // ---- routing -------------------------------------------------------------------------------------------------

  function status(text, isError) {
    const node = $("status");
    node.textContent = text;
    node.className = "status" + (isError ? " error" : "");
    node.hidden = !text;
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
    return body;
  }

  function show(view) {
    $("overview").hidden = view !== "overview";
    $("run-view").hidden = view !== "run";
  }

  async function route() {
    const match = /^#run=([0-9a-f]{16})$/.exec(location.hash);
    document.documentElement.removeAttribute("data-ready");
    try {
      if (match) {
        status("Loading run…");
        const run = await getJson("/api/runs/" + match[1]);
        renderRun(run);
        show("run");
        status("");
        document.title = "agentcost: " + run.name;
        document.documentElement.setAttribute("data-ready", "run");
      } else {
        if (summary === null) {
          status("Loading…");
          summary = await getJson("/api/summary");
          renderOverview(summary);
        }
        show("overview");
        status("");
        document.title = "agentcost dashboard";
        document.documentElement.setAttribute("data-ready", "overview");
      }
    } catch (error) {
      show(null);
      status("Could not load: " + error.message, true);
      document.documentElement.setAttribute("data-ready", "error");
    }
  }

  function home() {
    if (location.hash) location.hash = "";
    else route();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("home").addEventListener("click", home);
    $("back").addEventListener("click", home);
    window.addEventListener("hashchange", route);
    route();
  });
})();
