// The Longshore dashboard: one page, no build step, no dependency. It reads and acts only
// through the public API (/api/v1) and follows the event stream for live updates: a page
// redraws when an event it shows arrives, never on a timer.
//
// Layout of this file: helpers (DOM, formatting, API), the live feed, the shell (sign-in,
// navigation, keys), then one function per page, in the order of the navigation.
"use strict";

// ---- DOM and formatting -------------------------------------------------------------------

/** Makes an element: h("td.num", {title: "x"}, "text", child, ...); "span#live.badge" gives
 * an id and classes. */
function h(tag, props, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name);
  const classes = rest.filter((p) => p.startsWith(".")).map((p) => p.slice(1));
  const id = rest.find((p) => p.startsWith("#"));
  if (classes.length) el.className = classes.join(" ");
  if (id) el.id = id.slice(1);
  if (props !== undefined && props !== null && (typeof props !== "object" || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = null;
  }
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

/** Replaces what `el` holds by `children` (null and false leave nothing). */
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  append(el, children);
  return el;
}

function fmtNum(n) {
  return n === undefined || n === null ? "—" : Number(n).toLocaleString("en-US");
}

function ago(iso) {
  if (!iso) return "—";
  const t = new Date(iso).getTime();
  const d = (Date.now() - t) / 1000;
  const abs = Math.abs(d);
  const unit = abs < 60 ? [abs, "s"] : abs < 3600 ? [abs / 60, "m"] : abs < 86400 ? [abs / 3600, "h"] : [abs / 86400, "d"];
  const text = `${Math.floor(unit[0])}${unit[1]}`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

function time(iso) {
  if (!iso) return h("span.muted", "—");
  return h("time", { datetime: iso, title: new Date(iso).toISOString() }, ago(iso));
}

function seconds(s) {
  if (s === undefined || s === null) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** A time as the clock of `zone` (an IANA zone) shows it. */
function inZone(iso, zone) {
  try {
    return new Date(iso).toLocaleString("en-GB", { timeZone: zone, dateStyle: "medium", timeStyle: "short" });
  } catch {
    return new Date(iso).toISOString();
  }
}

function duration(from, to) {
  if (!from || !to) return "—";
  return seconds((new Date(to) - new Date(from)) / 1000);
}

function badge(state) {
  return h(`span.badge.state-${state}`, state);
}

function json(value) {
  return h("pre.json", value === undefined || value === null ? "null" : JSON.stringify(value, null, 2));
}

/** The end of an id: its random part (the start of a UUIDv7 is its time, alike in a batch). */
function shortId(id) {
  return id ? `…${id.slice(-12)}` : "—";
}

function link(href, ...children) {
  return h("a", { href }, ...children);
}

function jobLink(id) {
  return link(`#/jobs/${id}`, h("code", shortId(id)));
}

function table(headers, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p.empty", empty);
  return h("table", h("thead", h("tr", headers.map((x) => h("th", x)))), h("tbody", rows));
}

function card(title, ...children) {
  return h("section.card", h("h2", title), ...children);
}

// ---- The API ------------------------------------------------------------------------------

const session = {
  token: sessionStorage.getItem("longshore.token"),
  who: null, // {actor, scope, auth_required}
};

const SCOPES = ["read", "enqueue", "operate", "admin"];
/** Whether the signed-in caller may act with `scope`: buttons are drawn only when it may. */
function can(scope) {
  return session.who && SCOPES.indexOf(session.who.scope) >= SCOPES.indexOf(scope);
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  if (session.token) out.Authorization = `Bearer ${session.token}`;
  return out;
}

async function api(path, { method = "GET", body, query } = {}) {
  let url = `/api/v1${path}`;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) q.append(k, one);
    }
    const text = q.toString();
    if (text) url += `?${text}`;
  }
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(url, init);
  if (res.status === 401) {
    signOut("Your token was refused. Sign in again.");
    throw new ApiError(401, { detail: "unauthorized" });
  }
  if (res.status === 204) return null;
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data || {});
  return data;
}

/** Runs an action from a button: disables it meanwhile, reports the outcome as a toast. */
async function act(button, label, fn) {
  if (button) button.disabled = true;
  try {
    const out = await fn();
    toast(label, "ok");
    return out;
  } catch (e) {
    toast(`${label}: ${e.message}`, "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function toast(text, kind) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const el = h(`div.toast.${kind}`, { role: "status" }, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 10000 : 5000);
}

/** A confirmation dialog; resolves true when confirmed. */
function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h("dialog.confirm", { "aria-label": title },
      h("h2", title), h("p", text),
      h("div.actions",
        h("button.secondary", { type: "button", onclick: () => dialog.close("no") }, "Cancel"),
        h("button.danger", { type: "button", "data-confirm": "yes", onclick: () => dialog.close("yes") }, confirmLabel)));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

function button(label, onclick, cls = "") {
  return h(`button${cls}`, { type: "button", onclick }, label);
}

/** A button shown only to callers with `scope`. */
function action(scope, label, onclick, cls = "") {
  return can(scope) ? button(label, onclick, cls) : null;
}

// ---- The live feed --------------------------------------------------------------------------
// One stream for the whole page, read with fetch (so it carries the Authorization header,
// which EventSource cannot), resumed with Last-Event-ID after any drop, the server's
// restart included: the server replays what the page missed, so nothing is skipped.

const live = {
  lastId: null,
  paused: false,
  state: "connecting",
  controller: null,
  listeners: new Set(),
  buffer: [], // events received while paused
  retryMs: 500,
};

function onLive(fn) {
  live.listeners.add(fn);
  return () => live.listeners.delete(fn);
}

function setLiveState(state) {
  live.state = state;
  const el = document.getElementById("live");
  if (el) {
    el.dataset.state = live.paused ? "paused" : state;
    el.textContent = live.paused ? "paused" : state;
  }
}

function deliver(event) {
  if (live.paused) {
    live.buffer.push(event);
    if (live.buffer.length > 10000) live.buffer.shift();
    return;
  }
  for (const fn of [...live.listeners]) {
    try { fn(event); } catch (e) { console.error(e); }
  }
}

async function connectLive() {
  if (live.controller) live.controller.abort();
  const controller = new AbortController();
  live.controller = controller;
  if (live.state !== "reconnecting") setLiveState("connecting");
  try {
    if (live.lastId === null) {
      // Where the stream starts: after the newest event stored now. Every later connection,
      // a reconnection after a restart of the server included, resumes from the last event
      // the page saw.
      const page = await api("/events", { query: { after: "latest", limit: 1 } });
      live.lastId = page.next_after;
    }
    const extra = { Accept: "text/event-stream", "Last-Event-ID": String(live.lastId) };
    const url = "/api/v1/events/stream";
    const res = await fetch(url, { headers: headers(extra), signal: controller.signal });
    if (res.status === 401) { signOut("Your token was refused. Sign in again."); return; }
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    setLiveState("live");
    live.retryMs = 500;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      let end;
      while ((end = pending.indexOf("\n\n")) >= 0) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        handleBlock(block);
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
  }
  if (controller.signal.aborted || live.controller !== controller) return;
  setLiveState("reconnecting");
  setTimeout(() => { if (live.controller === controller) connectLive(); }, live.retryMs);
  live.retryMs = Math.min(live.retryMs * 2, 5000);
}

function handleBlock(block) {
  let id = null, type = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") type = value;
    else if (field === "data") data += (data ? "\n" : "") + value;
  }
  if (type === "reset") {
    toast("Some events were deleted by retention before the page read them.", "error");
    return;
  }
  if (!data || type === "cutoff") return;
  let event;
  try { event = JSON.parse(data); } catch { return; }
  if (id !== null) live.lastId = Number(id);
  if (event && event.type) deliver(event);
}

function togglePause() {
  live.paused = !live.paused;
  setLiveState(live.state);
  const btn = document.getElementById("pause");
  if (btn) btn.textContent = live.paused ? "Resume live" : "Pause live";
  if (!live.paused) {
    const held = live.buffer;
    live.buffer = [];
    for (const event of held) deliver(event);
  }
}

/** Calls `fn` (with no arguments) at most once per `ms`, and once more after the last call. */
function throttle(fn, ms = 400) {
  let timer = null, again = false;
  return () => {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(function done() {
      if (again) { again = false; fn(); timer = setTimeout(done, ms); } else timer = null;
    }, ms);
  };
}

// ---- The shell ---------------------------------------------------------------------------

const PAGES = [
  ["", "Overview", "o"],
  ["jobs", "Jobs", "j"],
  ["failures", "Failures", "f"],
  ["queues", "Queues", "q"],
  ["workers", "Workers", "w"],
  ["schedules", "Schedules", "s"],
  ["sweeps", "Sweeps", "x"],
  ["ingesters", "Ingesters", "i"],
  ["webhooks", "Webhooks", "h"],
  ["push", "Push", "p"],
  ["events", "Live events", "e"],
];

let pageCleanup = [];

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(query) };
}

function go(path, params) {
  const q = params && params.toString();
  location.hash = `#/${path}${q ? `?${q}` : ""}`;
}

async function render() {
  for (const fn of pageCleanup) fn();
  pageCleanup = [];
  const app = document.getElementById("app");
  if (!session.who) {
    fill(app, signInPage());
    return;
  }
  const { parts, params } = route();
  const name = parts[0] || "";
  const main = h("main", { id: "main", tabindex: "-1" });
  fill(app, shell(name), main);
  const page = {
    "": overviewPage, jobs: parts[1] ? jobPage : jobsPage, failures: failuresPage,
    queues: queuesPage, workers: workersPage, schedules: schedulesPage, sweeps: sweepsPage,
    ingesters: ingestersPage, webhooks: webhooksPage, push: pushPage, events: eventsPage,
  }[name];
  if (!page) {
    main.append(h("h1", "Not found"), h("p", "No page is called ", h("code", name), "."));
    return;
  }
  try {
    await page(main, parts, params);
  } catch (e) {
    main.append(h("p.error", `Could not load this page: ${e.message}`));
  }
}

/** Registers a page's live handler, removed when the page changes. */
function pageLive(fn) {
  pageCleanup.push(onLive(fn));
}

function shell(current) {
  const nav = h("nav", { "aria-label": "Pages" },
    h("a.brand", { href: "#/" }, h("img", { src: "/favicon.svg", alt: "", width: 22, height: 22 }), "Longshore"),
    h("ul", PAGES.map(([path, label, key]) =>
      h("li", h("a", { href: `#/${path}`, "aria-current": path === current ? "page" : false, title: `g ${key}` }, label)))));
  const who = session.who;
  const header = h("header",
    h("span#live.live", { "data-state": live.state, "aria-live": "polite" }, live.state),
    h("button#pause.secondary", { type: "button", onclick: togglePause }, live.paused ? "Resume live" : "Pause live"),
    h("span.who", { title: "signed in as" }, `${who.actor} · ${who.scope}`),
    h("button.secondary", { type: "button", onclick: toggleTheme, title: "dark / light" }, "◐"),
    who.auth_required ? h("button.secondary", { type: "button", onclick: () => signOut() }, "Sign out") : null,
    h("div#toasts.toasts"));
  return h("div.shell", nav, header);
}

function toggleTheme() {
  const now = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = now;
  localStorage.setItem("longshore.theme", now);
}

function signInPage(message) {
  const input = h("input", { type: "password", name: "token", id: "token", autocomplete: "off", placeholder: "lsh_…", required: true, "aria-label": "API token" });
  const error = h("p.error", { id: "signin-error", role: "alert" }, message || session.message || "");
  const form = h("form.signin", {
    onsubmit: async (e) => {
      e.preventDefault();
      const ok = await signIn(input.value.trim());
      if (!ok) error.textContent = "That token was refused.";
    },
  },
  h("h1", "Longshore"),
  h("p", "Sign in with an API token (", h("code", "longshore tokens create --name you --scope operate"), "). It is kept for this tab only."),
  h("label", { for: "token" }, "Token"), input,
  h("button", { type: "submit" }, "Sign in"), error);
  setTimeout(() => input.focus(), 0);
  return h("div.center", form);
}

async function signIn(token) {
  const before = session.token;
  session.token = token || null;
  try {
    session.who = await fetchSession();
  } catch {
    session.token = before;
    return false;
  }
  if (!session.who) { session.token = before; return false; }
  if (token) sessionStorage.setItem("longshore.token", token);
  session.message = "";
  connectLive();
  render();
  return true;
}

async function fetchSession() {
  const res = await fetch("/api/v1/session", { headers: headers() });
  if (!res.ok) return null;
  return res.json();
}

function signOut(message) {
  sessionStorage.removeItem("longshore.token");
  session.token = null;
  session.who = null;
  session.message = message || "";
  if (live.controller) live.controller.abort();
  live.controller = null;
  render();
}

let pendingG = false;
document.addEventListener("keydown", (e) => {
  const target = e.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/") {
    const search = document.getElementById("search");
    if (search) { e.preventDefault(); search.focus(); }
    return;
  }
  if (pendingG) {
    pendingG = false;
    const page = PAGES.find(([, , key]) => key === e.key);
    if (page) go(page[0]);
    return;
  }
  if (e.key === "g") { pendingG = true; setTimeout(() => { pendingG = false; }, 1500); }
});

window.addEventListener("hashchange", render);

async function start() {
  const theme = localStorage.getItem("longshore.theme");
  if (theme) document.documentElement.dataset.theme = theme;
  session.who = await fetchSession().catch(() => null);
  if (session.who) connectLive();
  render();
}

// ---- Overview -----------------------------------------------------------------------------

const STATES = ["available", "scheduled", "running", "retryable", "completed", "cancelled", "discarded"];

async function overviewPage(main, _parts, params) {
  const minutes = Number(params.get("minutes") || 60);
  main.append(h("h1", "Overview"));
  const body = h("div.grid");
  main.append(body);
  const draw = async () => {
    const [stats, queues, throughput, failures, ingesters, endpoints] = await Promise.all([
      api("/stats"), api("/queues"), api("/stats/throughput", { query: { minutes } }),
      api("/failures"), api("/ingesters").catch(() => ({ items: [] })),
      api("/webhook-endpoints").catch(() => ({ items: [] })),
    ]);
    const ranges = [[60, "1 h"], [360, "6 h"], [1440, "24 h"], [4320, "3 d"]];
    const totals = throughput.buckets.reduce((a, b) => {
      for (const k of ["completed", "failed", "discarded", "cancelled"]) a[k] += b[k];
      return a;
    }, { completed: 0, failed: 0, discarded: 0, cancelled: 0 });
    const attempts = totals.completed + totals.failed + totals.discarded;
    const rate = attempts ? ((totals.failed + totals.discarded) / attempts) * 100 : 0;
    const warnings = queues.filter((q) => (q.counts.available || 0) > 0 && q.workers === 0 && !q.paused);
    const kinds = new Map();
    for (const g of failures.groups) for (const k of g.kinds) kinds.set(k, (kinds.get(k) || 0) + g.count / g.kinds.length);
    const topKinds = [...kinds.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
    const troubled = endpoints.items.filter((e) => e.breaker !== "closed" || !e.enabled);
    fill(body,
      h("section.counts", STATES.map((st) =>
        link(`#/jobs?state=${st}`, h("div.count", h("span.n", { "data-state": st }, fmtNum(stats.counts[st] || 0)), badge(st)))),
        Object.entries(stats.active_users || {}).map(([window, n]) =>
          h("div.count.users", { title: "distinct users seen (lifecycle events, pushes, activity reports)" }, h("span.n", fmtNum(n)), h("span.badge", `users, ${window}`)))),
      warnings.length ? h("div.warning", { role: "alert" }, `No live worker serves ${warnings.map((q) => q.name).join(", ")}, and jobs are waiting there.`) : null,
      card("Throughput",
        h("div.ranges", ranges.map(([m, label]) => {
          const p = new URLSearchParams({ minutes: m });
          return h(`a${m === minutes ? ".active" : ""}`, { href: `#/?${p}` }, label);
        })),
        h("p.muted", `${fmtNum(totals.completed)} completed, ${fmtNum(totals.failed)} failed attempts, ${fmtNum(totals.discarded)} discarded · failure rate ${rate.toFixed(1)} %`),
        chart(throughput)),
      card("Queues", queuesTable(queues, false)),
      card("Top failing kinds", table(["kind", "failed jobs"], topKinds.map(([k, n]) =>
        h("tr", h("td", link(`#/jobs?${new URLSearchParams({ state: "discarded", q: `kind:${k}` })}`, k)), h("td.num", fmtNum(Math.round(n))))), "No failures in the last 7 days.")),
      card("Ingesters", table(["stream", "lag", "pending", "dead letters"], ingesters.items.map((i) =>
        h("tr", h("td", i.stream), h("td.num", fmtNum(i.lag)), h("td.num", fmtNum(i.pending)), h("td.num", fmtNum(i.dead_lettered)))), "No ingesters are configured.")),
      card("Webhook endpoints in trouble", table(["url", "breaker", "failing since"], troubled.map((e) =>
        h("tr", h("td", link("#/webhooks", e.url)), h("td", h(`span.badge.breaker-${e.breaker}`, e.enabled ? e.breaker : "disabled")), h("td", time(e.failing_since)))), "Every endpoint is healthy.")),
    );
  };
  await draw();
  pageLive(throttle(() => draw().catch(() => {}), 2000));
}

/** A stacked bar chart of a throughput answer, drawn as SVG. */
function chart(tp) {
  const W = 720, H = 160, pad = 24;
  const buckets = tp.buckets;
  const max = Math.max(1, ...buckets.map((b) => b.completed + b.failed + b.discarded + b.cancelled));
  const bw = (W - pad) / Math.max(1, buckets.length);
  const y = (n) => ((H - pad) * n) / max;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "jobs per bucket" });
  svg.append(s("text", { x: 0, y: 12, class: "axis" }, fmtNum(max)), s("line", { x1: pad, x2: W, y1: H - pad, y2: H - pad, class: "axis" }));
  buckets.forEach((b, i) => {
    let top = H - pad;
    for (const [key, cls] of [["completed", "ok"], ["failed", "warn"], ["discarded", "bad"], ["cancelled", "muted"]]) {
      const hgt = y(b[key]);
      if (hgt <= 0) continue;
      top -= hgt;
      const rect = s("rect", { x: pad + i * bw, y: top, width: Math.max(1, bw - 1), height: hgt, class: cls });
      rect.append(s("title", {}, `${new Date(b.at).toLocaleString()} · ${key} ${b[key]}`));
      svg.append(rect);
    }
  });
  const first = buckets[0], last = buckets[buckets.length - 1];
  if (first) svg.append(s("text", { x: pad, y: H - 6, class: "axis" }, new Date(first.at).toLocaleTimeString()));
  if (last) svg.append(s("text", { x: W - 80, y: H - 6, class: "axis" }, new Date(last.at).toLocaleTimeString()));
  return h("figure", svg, h("figcaption.legend", h("span.ok", "completed"), h("span.warn", "failed attempts"), h("span.bad", "discarded"), h("span.muted", "cancelled")));
}

// ---- Jobs explorer ---------------------------------------------------------------------------

const RANGES = [["1h", 3600], ["24h", 86400], ["7d", 7 * 86400], ["30d", 30 * 86400], ["all", null]];

/** Reads the search box: `kind:x queue:y tag:z id:0192 args.user.id:42 error:"timed out"`;
 * other words search the error text. */
function parseSearch(q) {
  const out = { args: {} };
  const words = [];
  const re = /(\S+?):("([^"]*)"|\S+)|"([^"]*)"|(\S+)/g;
  let m;
  while ((m = re.exec(q || ""))) {
    if (m[1]) {
      const key = m[1];
      const value = m[3] !== undefined ? m[3] : m[2];
      if (["kind", "queue", "tag", "error"].includes(key)) out[key] = value;
      else if (key === "id") out.id_prefix = value;
      else if (key.startsWith("args.")) out.args[key] = value;
      else words.push(`${key}:${value}`);
    } else words.push(m[4] !== undefined ? m[4] : m[5]);
  }
  if (words.length && !out.error) out.error = words.join(" ");
  return out;
}

function rangeBounds(range) {
  const found = RANGES.find(([name]) => name === range) || RANGES[2];
  const now = Date.now();
  return {
    created_after: new Date(found[1] === null ? 0 : now - found[1] * 1000).toISOString(),
    created_before: new Date(now + 60000).toISOString(),
  };
}

async function jobsPage(main, _parts, params) {
  const state = params.get("state") || "discarded";
  const q = params.get("q") || "";
  const range = params.get("range") || "7d";
  const cursor = params.get("cursor") || "";
  const search = parseSearch(q);
  const bounds = rangeBounds(range);
  const query = {
    state: state === "all" ? undefined : state, kind: search.kind, queue: search.queue, tag: search.tag,
    id_prefix: search.id_prefix, error: search.error, created_after: range === "all" ? undefined : bounds.created_after,
    limit: 50, cursor: cursor || undefined, ...search.args,
  };
  const selector = {
    states: state === "all" ? [] : [state], kind: search.kind, queue: search.queue, tag: search.tag,
    error: search.error, args: Object.fromEntries(Object.entries(search.args).map(([k, v]) => [k.slice(5), v])),
    ...bounds,
  };
  const setParam = (changes) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) { if (v) p.set(k, v); else p.delete(k); }
    go("jobs", p);
  };
  const searchBox = h("input", { id: "search", type: "search", value: q, placeholder: "kind:email queue:default error:\"timed out\" args.user_id:42   (press /)", "aria-label": "search jobs" });
  const tabs = h("div.tabs", { role: "tablist" });
  main.append(h("h1", "Jobs"), tabs,
    h("form.search", { onsubmit: (e) => { e.preventDefault(); setParam({ q: searchBox.value.trim(), cursor: "" }); } },
      searchBox,
      h("select", { "aria-label": "created within", onchange: (e) => setParam({ range: e.target.value, cursor: "" }) },
        RANGES.map(([name]) => h("option", { value: name, selected: name === range }, name === "all" ? "any time" : `last ${name}`))),
      h("button", { type: "submit" }, "Search")));
  const bulk = h("div.bulk");
  const listBox = h("div");
  main.append(bulk, listBox);

  const drawTabs = async () => {
    const stats = await api("/stats");
    fill(tabs, ...["all", ...STATES].map((st) =>
      h(`a.tab${st === state ? ".active" : ""}`, { role: "tab", href: `#/jobs?${new URLSearchParams({ ...Object.fromEntries(params), state: st, cursor: "" })}`, "aria-selected": st === state ? "true" : "false" },
        st, " ", h("span.n", st === "all" ? fmtNum(stats.total) : fmtNum(stats.counts[st] || 0)))));
  };
  const selected = new Set();
  let page = { items: [] };
  const drawBulk = () => {
    const canAct = can("operate");
    const acts = [["retry", "Retry"], ["cancel", "Cancel"], ["delete", "Delete"]];
    fill(bulk,
      canAct && selected.size ? h("span", `${selected.size} selected: `, acts.map(([a, label]) =>
        button(`${label} selected`, (e) => runOperation(e.target, a, { ids: [...selected] }, selected.size), ".secondary"))) : null,
      canAct ? h("span.all", acts.map(([a, label]) =>
        button(`${label} all matching…`, (e) => allMatching(e.target, a, selector), ".secondary"))) : null);
  };
  const draw = async () => {
    page = await api("/jobs", { query });
    const rows = page.items.map((job) => h("tr", { dataset: { id: job.id } },
      can("operate") ? h("td", h("input", { type: "checkbox", "aria-label": `select ${job.id}`, checked: selected.has(job.id) || false, onchange: (e) => { if (e.target.checked) selected.add(job.id); else selected.delete(job.id); drawBulk(); } })) : null,
      h("td", jobLink(job.id)), h("td", badge(job.state)), h("td", job.kind), h("td", job.queue),
      h("td.num", `${job.attempt}/${job.max_attempts}`), h("td", time(job.created_at)),
      h("td.error", job.last_error ? job.last_error.slice(0, 160) : "")));
    const next = page.next_cursor ? link(`#/jobs?${new URLSearchParams({ ...Object.fromEntries(params), cursor: page.next_cursor })}`, "Older →") : null;
    const first = cursor ? link(`#/jobs?${new URLSearchParams({ ...Object.fromEntries(params), cursor: "" })}`, "← Newest") : null;
    fill(listBox,
      table([can("operate") ? "" : null, "id", "state", "kind", "queue", "attempt", "created", "last error"].filter((x) => x !== null), rows, "No job matches."),
      h("div.pager", first, next));
    drawBulk();
  };
  await Promise.all([drawTabs(), draw()]);
  // The counts come from /stats, which the server caches for 2 s: the tabs redraw at most
  // every 2.5 s, so the last redraw after a burst reads fresh counts.
  const refreshTabs = throttle(() => drawTabs().catch(() => {}), 2500);
  const refreshList = throttle(() => { if (!cursor) draw().catch(() => {}); }, 500);
  pageLive((event) => { if (event.job_id) { refreshTabs(); refreshList(); } });
}

/** "Apply to all N matching": a dry run counts, a confirmation shows the count, then it runs. */
async function allMatching(btn, actionName, selector) {
  const counted = await act(btn, "Counted", () => api("/operations", { method: "POST", body: { action: actionName, filter: selector, dry_run: true } }));
  if (!counted) return;
  if (!counted.matched) { toast("No job matches.", "ok"); return; }
  const ok = await confirmDialog(`${actionName} ${fmtNum(counted.matched)} jobs?`,
    `This will ${actionName} all ${fmtNum(counted.matched)} matching jobs (those whose state allows it).`, `${actionName} ${fmtNum(counted.matched)} jobs`);
  if (ok) await runOperation(btn, actionName, selector, counted.matched, true);
}

async function runOperation(btn, actionName, selector, n, confirmed) {
  if (!confirmed && !(await confirmDialog(`${actionName} ${n} jobs?`, `This will ${actionName} the ${n} selected jobs.`, `${actionName} ${n} jobs`))) return;
  const op = await act(btn, `Started: ${actionName} ${fmtNum(n)} jobs`, () =>
    api("/operations", { method: "POST", body: { action: actionName, filter: selector } }));
  if (op) followOperation(op.id);
}

/** Follows a bulk operation to its end, reporting how far it got. */
async function followOperation(id) {
  for (let i = 0; i < 600; i++) {
    const op = await api(`/operations/${id}`).catch(() => null);
    if (op && op.state !== "running") {
      toast(`Operation ${op.action}: ${fmtNum(op.done)} done, ${fmtNum(op.skipped)} skipped${op.error ? `, ${op.error}` : ""}`, op.state === "completed" ? "ok" : "error");
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

// ---- Job detail ---------------------------------------------------------------------------------

async function jobPage(main, parts) {
  const id = parts[1];
  const box = h("div");
  main.append(box);
  const draw = async () => {
    const [job, attempts, events] = await Promise.all([
      api(`/jobs/${id}`), api(`/jobs/${id}/attempts`), api(`/jobs/${id}/events`),
    ]);
    const meta = job.metadata || {};
    const retry = (e) => act(e.target, "Retried", () => api(`/jobs/${id}/retry`, { method: "POST" }));
    const acts = h("div.actions",
      ["retryable", "discarded", "cancelled", "completed"].includes(job.state) ? action("operate", "Retry", retry) : null,
      ["available", "scheduled", "retryable", "running"].includes(job.state) ? action("operate", "Cancel", (e) => act(e.target, "Cancel requested", () => api(`/jobs/${id}/cancel`, { method: "POST" })), ".secondary") : null,
      ["scheduled", "retryable"].includes(job.state) ? action("operate", "Run now", (e) => act(e.target, "Made available", () => api(`/jobs/${id}/run`, { method: "POST" })), ".secondary") : null,
      job.state !== "running" ? action("operate", "Edit…", () => editJob(job), ".secondary") : null,
      action("enqueue", "Clone", (e) => act(e.target, "Cloned", async () => {
        const made = await api("/jobs", { method: "POST", body: { kind: job.kind, args: job.args, queue: job.queue, priority: job.priority, max_attempts: job.max_attempts, tags: job.tags } });
        go(`jobs/${made.id}`);
      }), ".secondary"),
      job.state !== "running" ? action("operate", "Delete", async (e) => {
        if (await confirmDialog("Delete this job?", "Its attempts and events go with it.", "Delete")) {
          await act(e.target, "Deleted", () => api(`/jobs/${id}`, { method: "DELETE" }));
          go("jobs");
        }
      }, ".danger") : null);
    const related = [];
    if (meta.parent) related.push(h("dt", "parent"), h("dd", jobLink(meta.parent), meta.step !== undefined ? ` step ${meta.step}` : ""));
    const children = (job.progress && Array.isArray(job.progress.steps)) ? job.progress.steps.filter((st) => st.job) : [];
    if (children.length) related.push(h("dt", "children"), h("dd", children.map((c) => [jobLink(c.job), ` ${c.name || ""} `])));
    if (meta.schedule) related.push(h("dt", "schedule"), h("dd", link("#/schedules", meta.schedule), meta.tick ? ` tick ${meta.tick}` : ""));
    if (meta.sweep) related.push(h("dt", "sweep"), h("dd", link("#/sweeps", meta.sweep)));
    if (meta.stream_entry) related.push(h("dt", "stream entry"), h("dd", h("code", JSON.stringify(meta.stream_entry))));
    if (meta.traceparent) related.push(h("dt", "trace id"), h("dd", h("code.trace", String(meta.traceparent).split("-")[1] || meta.traceparent)));
    fill(box,
      h("div.title", h("h1", job.kind, " ", h("code", shortId(job.id))), badge(job.state)),
      acts,
      h("dl.facts",
        h("dt", "id"), h("dd", h("code", job.id)),
        h("dt", "queue"), h("dd", link(`#/jobs?${new URLSearchParams({ state: "all", q: `queue:${job.queue}` })}`, job.queue)),
        h("dt", "attempt"), h("dd", `${job.attempt} of ${job.max_attempts}`),
        h("dt", "priority"), h("dd", job.priority),
        h("dt", "created"), h("dd", time(job.created_at)),
        h("dt", "runs at"), h("dd", time(job.run_at)),
        h("dt", "finished"), h("dd", time(job.finished_at)),
        job.locked_by ? [h("dt", "worker"), h("dd", job.locked_by)] : null,
        job.unique_key ? [h("dt", "unique key"), h("dd", h("code", job.unique_key))] : null,
        job.sequence ? [h("dt", "sequence"), h("dd", h("code", job.sequence))] : null,
        job.tags.length ? [h("dt", "tags"), h("dd", job.tags.map((t) => h("span.tag", t)))] : null,
        related),
      card("Attempts", table(["#", "outcome", "worker", "started", "took", "error"], attempts.map((a) =>
        h("tr.attempt", h("td.num", a.attempt), h("td", badge(a.outcome)), h("td", a.worker || "—"), h("td", time(a.started_at)),
          h("td", duration(a.started_at, a.finished_at)), h("td.error", a.error ? h("pre.err", a.error) : ""))), "Not attempted yet.")),
      h("div.cols",
        card("Args", json(job.args)), card("Metadata", json(job.metadata)),
        job.result !== undefined ? card("Result", json(job.result)) : null,
        job.progress !== undefined ? card("Progress", json(job.progress)) : null),
      card("Timeline", h("ol.timeline#timeline", events.map(eventItem))));
  };
  await draw();
  const redraw = throttle(() => draw().catch(() => {}), 300);
  pageLive((event) => { if (event.job_id === id) redraw(); });
}

function eventItem(e) {
  return h("li", { dataset: { id: e.id, type: e.type } }, h("span.etype", e.type), " ", e.state ? badge(e.state) : null, " ",
    e.attempt ? `attempt ${e.attempt} ` : "", time(e.at), e.data && e.data.error ? h("div.error", e.data.error) : null);
}

function editJob(job) {
  const args = h("textarea", { rows: 10, "aria-label": "args" }, JSON.stringify(job.args, null, 2));
  const maxAttempts = h("input", { type: "number", min: job.attempt || 1, value: job.max_attempts, "aria-label": "max attempts" });
  const err = h("p.error");
  const dialog = h("dialog.edit", h("h2", "Edit, then retry"),
    h("label", "args (JSON)"), args, h("label", "max attempts"), maxAttempts, err,
    h("div.actions",
      h("button.secondary", { type: "button", onclick: () => dialog.close() }, "Cancel"),
      h("button", {
        type: "button", onclick: async () => {
          let parsed;
          try { parsed = JSON.parse(args.value); } catch (e) { err.textContent = `args: ${e.message}`; return; }
          try {
            await api(`/jobs/${job.id}`, { method: "PATCH", body: { args: parsed, max_attempts: Number(maxAttempts.value) } });
            if (["retryable", "discarded", "cancelled", "completed"].includes(job.state)) await api(`/jobs/${job.id}/retry`, { method: "POST" });
            dialog.close();
            toast("Saved", "ok");
          } catch (e) { err.textContent = e.message; }
        },
      }, "Save and retry")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// ---- Failures -------------------------------------------------------------------------------

async function failuresPage(main) {
  main.append(h("h1", "Failures"), h("p.muted", "Failed jobs of the last 7 days (discarded, or waiting to retry), grouped by their error with ids, numbers and addresses set aside."));
  const box = h("div");
  main.append(box);
  const draw = async () => {
    const report = await api("/failures");
    const groupAct = (g, actionName) => async (e) => {
      const path = `/failures/${g.fingerprint}/operations`;
      const counted = await act(e.target, "Counted", () => api(path, { method: "POST", body: { action: actionName, dry_run: true } }));
      if (!counted) return;
      if (!(await confirmDialog(`${actionName} ${fmtNum(counted.matched)} jobs?`, `Every job of the group “${g.pattern.slice(0, 80)}”.`, `${actionName} ${fmtNum(counted.matched)} jobs`))) return;
      const op = await act(e.target, `Started: ${actionName} ${fmtNum(counted.matched)} jobs`, () => api(path, { method: "POST", body: { action: actionName } }));
      if (op) followOperation(op.id);
    };
    fill(box,
      report.complete ? null : h("p.warning", `Only the newest ${fmtNum(report.scanned)} failed jobs were read.`),
      table(["error", "jobs", "kinds", "first seen", "last seen", "sample", ""], report.groups.map((g) =>
        h("tr.group", { dataset: { fingerprint: g.fingerprint } },
          h("td", h("div.pattern", g.pattern), h("div.muted.sample", g.sample_error.slice(0, 200))),
          h("td.num", fmtNum(g.count), h("div.muted", Object.entries(g.states).map(([st, n]) => `${n} ${st}`).join(", "))),
          h("td", g.kinds.slice(0, 3).join(", ")), h("td", time(g.first_seen)), h("td", time(g.last_seen)),
          h("td", jobLink(g.sample_job_id)),
          h("td.actions", action("operate", "Retry all", groupAct(g, "retry")), action("operate", "Cancel all", groupAct(g, "cancel"), ".secondary"),
            action("operate", "Delete all", groupAct(g, "delete"), ".danger")))), "No failures. 🎉"));
  };
  await draw();
  const redraw = throttle(() => draw().catch(() => {}), 1000);
  pageLive((event) => { if (/^job\.(failed|discarded|retried|deleted|cancelled|completed)$/.test(event.type)) redraw(); });
}

// ---- Queues and workers -----------------------------------------------------------------------

/** The queues as a table: every figure and the actions on the queues page, the essentials on
 * the overview. */
function queuesTable(queues, full) {
  const headers = ["queue", "available", "running", full ? "retryable" : null, "oldest waiting", "done / min", "workers", full ? "limit" : null, full ? "" : null];
  return table(headers.filter((x) => x !== null),
    queues.map((q) => h(`tr${q.paused ? ".paused" : ""}`, { dataset: { queue: q.name } },
      h("td", link(`#/jobs?${new URLSearchParams({ state: "all", q: `queue:${q.name}` })}`, q.name), q.paused ? h("span.badge.paused", "paused") : null),
      h("td.num", fmtNum(q.counts.available || 0)), h("td.num", fmtNum(q.counts.running || 0)),
      full ? h("td.num", fmtNum(q.counts.retryable || 0)) : null,
      h("td.num", seconds(q.oldest_available_s)), h("td.num", fmtNum(q.completed_last_minute)),
      h(`td.num${(q.counts.available || 0) > 0 && q.workers === 0 ? ".bad" : ""}`, fmtNum(q.workers)),
      full ? h("td.num", q.concurrency === undefined || q.concurrency === null ? "—" : q.concurrency) : null,
      full ? h("td.actions",
        q.paused ? action("operate", "Resume", (e) => act(e.target, `Resumed ${q.name}`, () => api(`/queues/${encodeURIComponent(q.name)}/resume`, { method: "POST" })))
          : action("operate", "Pause", (e) => act(e.target, `Paused ${q.name}`, () => api(`/queues/${encodeURIComponent(q.name)}/pause`, { method: "POST" })), ".secondary"),
        action("operate", "Limit…", async (e) => {
          const value = prompt(`Most jobs of ${q.name} running at once, across all workers (empty for no limit):`, q.concurrency ?? "");
          if (value === null) return;
          await act(e.target, "Limit set", () => api(`/queues/${encodeURIComponent(q.name)}/concurrency`, { method: "PUT", body: { concurrency: value === "" ? null : Number(value) } }));
        }, ".secondary")) : null)), "No queue yet.");
}

async function queuesPage(main) {
  main.append(h("h1", "Queues"));
  const box = h("div");
  main.append(box);
  const draw = async () => fill(box, queuesTable(await api("/queues"), true));
  await draw();
  pageLive(throttle(() => draw().catch(() => {}), 1000));
}

async function workersPage(main) {
  main.append(h("h1", "Workers"));
  const box = h("div");
  main.append(box);
  const draw = async () => {
    const workers = await api("/workers");
    fill(box, table(["worker", "queue", "host", "pid", "running / slots", "kinds", "started", "heartbeat"], workers.map((w) =>
      h(`tr${w.stopped_at ? ".stopped" : ""}`, h("td", h("code", w.id)), h("td", w.queue), h("td", w.host), h("td.num", w.pid),
        h("td.num", `${w.running} / ${w.concurrency}`), h("td", (w.kinds || []).join(", ")), h("td", time(w.started_at)),
        h("td", w.stopped_at ? ["stopped ", time(w.stopped_at)] : time(w.last_seen_at)))), "No worker has reported."));
  };
  await draw();
  pageLive(throttle(() => draw().catch(() => {}), 2000));
}

// ---- Schedules and sweeps ------------------------------------------------------------------------

async function schedulesPage(main) {
  main.append(h("h1", "Schedules"));
  const box = h("div");
  main.append(box);
  const draw = async () => {
    const schedules = await api("/schedules");
    fill(box, table(["schedule", "cron", "zone", "job", "next fire", "last fire", "fired / skipped / missed", ""], schedules.map((sc) =>
      h(`tr${sc.enabled ? "" : ".paused"}`, { dataset: { schedule: sc.id } },
        h("td", h("code", sc.id), sc.enabled ? null : h("span.badge.paused", "paused")), h("td", h("code", sc.cron)), h("td", sc.timezone),
        h("td", sc.job.kind, " → ", sc.job.queue || "default"), h("td", time(sc.next_fire_at), sc.next_fire_at ? h("div.muted", inZone(sc.next_fire_at, sc.timezone)) : null),
        h("td", time(sc.last_fire_at), sc.last_job_id ? [" ", jobLink(sc.last_job_id)] : null),
        h("td.num", `${fmtNum(sc.fired_count)} / ${fmtNum(sc.skipped_count)} / ${fmtNum(sc.missed_count)}`),
        h("td.actions",
          action("operate", "Trigger", (e) => act(e.target, `Triggered ${sc.id}`, () => api(`/schedules/${encodeURIComponent(sc.id)}/trigger`, { method: "POST" }))),
          sc.enabled ? action("operate", "Pause", (e) => act(e.target, `Paused ${sc.id}`, () => api(`/schedules/${encodeURIComponent(sc.id)}/pause`, { method: "POST" })), ".secondary")
            : action("operate", "Resume", (e) => act(e.target, `Resumed ${sc.id}`, () => api(`/schedules/${encodeURIComponent(sc.id)}/resume`, { method: "POST" })), ".secondary"),
          button("History", async () => {
            const jobs = await api(`/schedules/${encodeURIComponent(sc.id)}/jobs`);
            const upcoming = await api(`/schedules/${encodeURIComponent(sc.id)}/upcoming`);
            const dialog = h("dialog.history", h("h2", `${sc.id}`),
              h("h3", `Next fires (${sc.timezone})`), h("ul", upcoming.map((t) => h("li", inZone(t, sc.timezone)))),
              h("h3", "Jobs it made"), table(["job", "state", "created"], jobs.map((j) => h("tr", h("td", jobLink(j.id)), h("td", badge(j.state)), h("td", time(j.created_at))))),
              h("div.actions", h("button", { type: "button", onclick: () => dialog.close() }, "Close")));
            dialog.addEventListener("close", () => dialog.remove());
            document.body.append(dialog);
            dialog.showModal();
          }, ".secondary")))), "No schedule."));
  };
  await draw();
  const redraw = throttle(() => draw().catch(() => {}), 1000);
  pageLive((event) => { if (event.type.startsWith("schedule.") || event.type === "job.enqueued") redraw(); });
}

async function sweepsPage(main) {
  main.append(h("h1", "Sweeps"));
  const box = h("div");
  main.append(box);
  const run = (sw) => sw.last_run ? [badge(sw.last_run.state), ` ${fmtNum(sw.last_run.matched)} matched, ${fmtNum(sw.last_run.acted)} acted `, time(sw.last_run.created_at)] : "never";
  const draw = async () => {
    const sweeps = await api("/sweeps");
    fill(box, table(["sweep", "next run", "last run", "last dry run", ""], sweeps.map((sw) =>
      h("tr", h("td", h("code", sw.name), sw.paused ? h("span.badge.paused", "paused") : null), h("td", time(sw.next_run_at)),
        h("td", run(sw)), h("td", sw.last_dry_run ? [`${fmtNum(sw.last_dry_run.matched)} would match `, time(sw.last_dry_run.created_at)] : "—"),
        h("td.actions",
          action("operate", "Dry run", (e) => act(e.target, `Dry run of ${sw.name} started`, () => api(`/sweeps/${encodeURIComponent(sw.name)}/dry-run`, { method: "POST" })), ".secondary"),
          action("operate", "Run now", (e) => act(e.target, `${sw.name} started`, () => api(`/sweeps/${encodeURIComponent(sw.name)}/run`, { method: "POST" })))))), "No sweep is declared."));
  };
  await draw();
  const redraw = throttle(() => draw().catch(() => {}), 1000);
  pageLive((event) => { if (event.type.startsWith("sweep.") || event.kind === "sweep") redraw(); });
}

// ---- Ingesters, webhooks, push -------------------------------------------------------------------

async function ingestersPage(main) {
  main.append(h("h1", "Ingesters"));
  const box = h("div");
  main.append(box);
  const draw = async () => {
    const list = await api("/ingesters");
    fill(box, table(["stream", "group", "connected", "lag", "pending", "oldest pending", "dead letters", "ingested", "last entry"], list.items.map((i) =>
      h("tr", h("td", h("code", i.stream)), h("td", i.group), h("td", i.connected ? "yes" : h("span.bad", i.error || "no")),
        h("td.num", fmtNum(i.lag)), h("td.num", fmtNum(i.pending)), h("td.num", i.oldest_pending_ms === undefined ? "—" : seconds(i.oldest_pending_ms / 1000)),
        h("td.num", fmtNum(i.dead_lettered)), h("td.num", fmtNum(i.ingested)), h("td", i.last_entry_id ? [h("code", i.last_entry_id), " ", time(i.last_entry_at)] : "—"))),
    "No ingester runs in this process (see [[ingesters]] in the configuration)."));
  };
  await draw();
  pageLive(throttle(() => draw().catch(() => {}), 2000));
}

async function webhooksPage(main) {
  main.append(h("h1", "Webhook endpoints"));
  const box = h("div");
  const log = h("div");
  main.append(box, log);
  const showLog = async (ep) => {
    const attempts = await api(`/webhook-endpoints/${ep.id}/attempts`);
    fill(log, card(`Deliveries to ${ep.url}`, table(["at", "event", "attempt", "status", "latency", "error", ""], attempts.items.map((a) =>
      h("tr", h("td", time(a.at)), h("td", a.event_type), h("td.num", a.attempt), h("td.num", a.status ?? "—"), h("td.num", a.latency_ms === undefined ? "—" : `${a.latency_ms} ms`),
        h("td.error", a.error || ""), h("td", jobLink(a.job_id), " ",
          action("operate", "Redeliver", (e) => act(e.target, "Redelivery enqueued", () => api(`/webhook-endpoints/${ep.id}/redeliver`, { method: "POST", body: { job_id: a.job_id } })), ".secondary")))), "No delivery yet.")));
  };
  const draw = async () => {
    const list = await api("/webhook-endpoints");
    fill(box, table(["url", "kinds", "breaker", "failures in a row", "failing since", ""], list.items.map((ep) =>
      h("tr", h("td", h("code", ep.url)), h("td", (ep.kinds || []).join(", ") || "all"),
        h("td", h(`span.badge.breaker-${ep.breaker}`, ep.enabled ? ep.breaker : "disabled"), ep.disabled_reason ? h("div.muted", ep.disabled_reason) : null),
        h("td.num", fmtNum(ep.consecutive_failures)), h("td", time(ep.failing_since)),
        h("td.actions", button("Deliveries", () => showLog(ep), ".secondary"),
          action("operate", "Replay last hour", (e) => act(e.target, "Replay enqueued", () => api(`/webhook-endpoints/${ep.id}/replay`, { method: "POST", body: { since: new Date(Date.now() - 3600000).toISOString() } })), ".secondary")))),
    "No webhook endpoint (POST /api/v1/webhook-endpoints makes one)."));
  };
  await draw();
}

async function pushPage(main) {
  const gateways = h("div");
  const box = h("ol.timeline");
  main.append(h("h1", "Push stream"), card("Gateways connected to this server", gateways),
    h("h2", "Pushes, live"), h("p.muted", "As gateways read them from GET /api/v1/push/stream (resume with Last-Event-ID)."), box);
  const drawGateways = async () => {
    const list = await api("/push/gateways");
    fill(gateways, table(["gateway", "share", "kinds", "connected", "position"], list.items.map((g) =>
      h("tr", h("td", g.actor), h("td", g.partition || "all users"), h("td", g.kinds.join(", ") || "all"), h("td", time(g.connected_at)), h("td.num", fmtNum(g.position)))),
    "No gateway is connected to this server."));
  };
  await drawGateways();
  // Positions move with pushes: the table redraws when one arrives on this page's own stream.
  const redrawGateways = throttle(() => drawGateways().catch(() => {}), 1000);
  const res = await fetch("/api/v1/push/stream?after=latest", { headers: headers({ Accept: "text/event-stream" }) }).catch(() => null);
  if (!res || !res.ok || !res.body) { box.append(h("li.muted", "The push stream is not reachable.")); return; }
  const controller = new AbortController();
  pageCleanup.push(() => controller.abort());
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  controller.signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
  box.append(h("li.muted", "Waiting for pushes…"));
  let pending = "";
  (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ done: true }));
      if (done) return;
      pending += value;
      let end;
      while ((end = pending.indexOf("\n\n")) >= 0) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        try {
          const p = JSON.parse(data);
          if (p.position === undefined) continue;
          box.prepend(h("li", h("span.etype", `#${p.position}`), ` ${p.kind} → user ${p.user_id} `, time(p.at), json(p.payload)));
          redrawGateways();
          while (box.children.length > 200) box.lastChild.remove();
        } catch { /* a notice, not a push */ }
      }
    }
  })();
}

// ---- Live events ------------------------------------------------------------------------------

async function eventsPage(main, _parts, params) {
  const filter = params.get("type") || "";
  const input = h("input", { id: "search", type: "search", value: filter, placeholder: "type prefix, e.g. job.failed", "aria-label": "filter events by type" });
  const list = h("ol.timeline.events#events");
  main.append(h("h1", "Live events"),
    h("form.search", { onsubmit: (e) => { e.preventDefault(); go("events", new URLSearchParams(input.value ? { type: input.value } : {})); } }, input, h("button", { type: "submit" }, "Filter")),
    h("p.muted", "Events as they happen. The feed resumes after a dropped connection with no gap; “Pause live” holds them until you resume."), list);
  // Newest on top, in id order; an event already shown is not shown again. The live handler
  // is registered before the recent past is read, so nothing falls between the two.
  const show = (e) => {
    if (filter && !e.type.startsWith(filter)) return;
    if (list.querySelector(`li[data-id="${e.id}"]`)) return;
    const item = h("li", { dataset: { id: e.id, type: e.type } }, h("span.etype", e.type), " ",
      e.job_id ? jobLink(e.job_id) : null, " ", e.queue ? h("span.muted", e.queue) : null, " ", e.kind || "", " ",
      e.state ? badge(e.state) : null, " ", time(e.at));
    const older = [...list.children].find((li) => Number(li.dataset.id) < e.id);
    list.insertBefore(item, older || null);
    while (list.children.length > 500) list.lastChild.remove();
  };
  pageLive(show);
  const page = await api("/events", { query: { limit: 50, since: new Date(Date.now() - 3600000).toISOString() } }).catch(() => ({ items: [] }));
  for (const e of page.items) show(e);
}

start();
