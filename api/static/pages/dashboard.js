// The operations dashboard: /dashboard. The three KPIs (`kpis`), today's value against its
// threshold and a line chart over the chosen period with the threshold drawn, filtered by
// period, channel and category; and the open tasks. Read through the GraphQL API under the
// signed-in account's policy. Charts are SVG built with DOM calls: no library, no CDN, and no
// value is ever parsed as markup.
import { el, firstError, gql, setText, signIn } from "./session.js";

const SVG = "http://www.w3.org/2000/svg";
const KPIS = `query($f: Date!, $t: Date!, $c: Channel, $k: String) {
  kpis(from: $f, to: $t, channel: $c, category: $k) {
    day name value numerator denominator threshold breached asOf } }`;
const CATEGORIES = `{ kpiCategories }`;
const TASKS = `{ tasks(status: OPEN, first: 50) { edges { node {
  id kind title assignee createdAt } } } }`;
const NAMES = {
  ORDER_TIMELINESS: "Order processing timeliness",
  STOCK_ACCURACY: "Stock accuracy",
  CUSTOMER_COMPLETENESS: "Customer completeness",
};
const EXPLAINED = {
  ORDER_TIMELINESS: "orders shipped on their business day / orders of the day",
  STOCK_ACCURACY: "counted SKUs matching the system / SKUs counted",
  CUSTOMER_COMPLETENESS: "customers with valid phone, address and email / all customers",
};

function percent(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`;
}

// The business day comes from the server (`viewer.businessToday`, in the business timezone),
// never from the browser's clock: a browser in another zone, or in Shanghai before 08:00 with
// a UTC clock, would otherwise show the day before (issue #34). Days are counted on the
// calendar, in UTC arithmetic on the date alone, so no local offset can shift them.
const business = { today: null, zone: null };
const BUSINESS = `{ viewer { businessToday businessTimezone } }`;

function addDays(isoDate, days) {
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

function period() {
  const days = Number(document.getElementById("db-period").value);
  return { from: addDays(business.today, -(days - 1)), to: business.today, days };
}

function complain(message) {
  const box = document.getElementById("db-error");
  box.textContent = message || "";
  box.hidden = !message;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

// A line chart of one KPI: days on x, 0–100% on y (zoomed to the data), the threshold dashed.
function chart(name, series) {
  const width = 760;
  const height = 220;
  const pad = { left: 48, right: 12, top: 16, bottom: 28 };
  const threshold = series.length ? series[0].threshold : 0;
  const values = series.filter((v) => v.value !== null).map((v) => v.value);
  const low = Math.max(0, Math.min(threshold, ...values, 1) - 0.05);
  const x = (i) => pad.left + (series.length <= 1 ? 0 : (i * (width - pad.left - pad.right)) / (series.length - 1));
  const y = (v) => pad.top + ((1 - (v - low) / (1 - low)) * (height - pad.top - pad.bottom));
  const figure = el("figure", undefined, "chart");
  figure.dataset.kpi = name;
  const caption = el("figcaption", `${NAMES[name]} — ${EXPLAINED[name]}`);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${NAMES[name]} per day`,
  });
  for (const tick of [low, (low + 1) / 2, 1]) {
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: "grid" }));
    const label = svg("text", { x: pad.left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = percent(tick);
    root.append(label);
  }
  const limit = svg("line", {
    x1: pad.left, x2: width - pad.right, y1: y(threshold), y2: y(threshold), class: "threshold",
  });
  root.append(limit);
  const limitLabel = svg("text", { x: width - pad.right, y: y(threshold) - 4, class: "axis", "text-anchor": "end" });
  limitLabel.textContent = `threshold ${percent(threshold)}`;
  root.append(limitLabel);
  // The line, broken where a day has no data.
  let d = "";
  let pen = "M";
  series.forEach((v, i) => {
    if (v.value === null) {
      pen = "M";
      return;
    }
    d += `${pen}${x(i).toFixed(1)},${y(v.value).toFixed(1)} `;
    pen = "L";
  });
  const line = svg("path", { d: d.trim(), class: "series" });
  root.append(line);
  series.forEach((v, i) => {
    if (v.value === null) return;
    const dot = svg("circle", { cx: x(i), cy: y(v.value), r: 3, class: v.breached ? "dot breached" : "dot" });
    const title = svg("title");
    title.textContent = `${v.day}: ${percent(v.value)} (${v.numerator} / ${v.denominator})`;
    dot.append(title);
    root.append(dot);
  });
  for (const i of [0, series.length - 1]) {
    if (!series[i]) continue;
    const label = svg("text", { x: x(i), y: height - 8, class: "axis", "text-anchor": i ? "end" : "start" });
    label.textContent = series[i].day;
    root.append(label);
  }
  figure.append(caption, root);
  return figure;
}

function card(name, latest) {
  const box = el("article", undefined, latest && latest.breached ? "card breached" : "card");
  box.dataset.kpi = name;
  box.append(
    el("h2", NAMES[name]),
    el("p", latest ? percent(latest.value) : "—", "big"),
    el("p", latest ? `threshold ${percent(latest.threshold)} · ${latest.day}` : "no data", "note"),
    el("p", latest ? `${latest.numerator} of ${latest.denominator}` : "", "note"),
  );
  // Today's completeness is the worker's latest snapshot: say when it was taken.
  if (latest && latest.asOf && name === "CUSTOMER_COMPLETENESS") {
    const taken = new Date(latest.asOf);
    box.append(el("p", `as of ${taken.toLocaleString()}`, "note asof"));
  }
  if (latest && latest.breached) box.append(el("p", "Below threshold", "flag"));
  return box;
}

async function loadKpis() {
  const p = period();
  const channel = document.getElementById("db-channel").value || null;
  const category = document.getElementById("db-category").value || null;
  setText("db-period-text", `${p.from} to ${p.to}, by business day (${business.zone})`);
  const body = await gql(KPIS, { f: p.from, t: p.to, c: channel, k: category });
  const error = firstError(body);
  if (error) {
    complain(error.message);
    return;
  }
  complain("");
  const byName = {};
  for (const v of body.data.kpis) (byName[v.name] = byName[v.name] || []).push(v);
  const cards = document.getElementById("db-cards");
  const charts = document.getElementById("db-charts");
  cards.replaceChildren();
  charts.replaceChildren();
  for (const name of Object.keys(NAMES)) {
    const series = (byName[name] || []).sort((a, b) => a.day.localeCompare(b.day));
    // Today's value, or the latest day that has one.
    const latest = [...series].reverse().find((v) => v.value !== null) || null;
    cards.append(card(name, latest));
    charts.append(chart(name, series));
  }
  document.getElementById("db-main").dataset.loaded = `${p.days}|${channel || ""}|${category || ""}`;
}

async function loadCategories() {
  const body = await gql(CATEGORIES, {});
  const select = document.getElementById("db-category");
  for (const category of (body.data && body.data.kpiCategories) || []) {
    const option = el("option", category);
    option.value = category;
    select.append(option);
  }
}

async function loadTasks() {
  const body = await gql(TASKS, {});
  const rows = document.querySelector("#db-tasks tbody");
  rows.replaceChildren();
  const error = firstError(body);
  const note = document.getElementById("db-tasks-note");
  if (error) {
    note.textContent = "Your role does not work tasks.";
    note.hidden = false;
    return;
  }
  const tasks = body.data.tasks.edges.map((e) => e.node);
  for (const task of tasks) {
    const row = el("tr");
    row.append(
      el("td", task.kind),
      el("td", task.title),
      el("td", task.assignee),
      el("td", new Date(task.createdAt).toLocaleString()),
    );
    rows.append(row);
  }
  note.textContent = tasks.length ? "" : "No open task.";
  note.hidden = tasks.length > 0;
}

async function start(username) {
  setText("og-who", username);
  const viewer = (await gql(BUSINESS, {})).data.viewer;
  business.today = viewer.businessToday;
  business.zone = viewer.businessTimezone;
  document.getElementById("db-main").hidden = false;
  await loadCategories();
  await Promise.all([loadKpis(), loadTasks()]);
}

document.getElementById("db-filters").addEventListener("change", () => {
  loadKpis().catch((error) => complain(error.message));
});
document.getElementById("db-print").addEventListener("click", () => window.print());
signIn(document.getElementById("og-login"), (username) =>
  start(username).catch((error) => complain(error.message)),
);
