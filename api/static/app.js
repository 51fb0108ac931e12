// The live dashboard: polls GET /v1/trains (no reload), shows each train's next stops with
// their forecast level (GET /v1/trips/{trip}/forecast) and, on a stop's click, its departures
// board (GET /v1/stops/{stop}/departures); a train's history and devices on click, and, for a
// signed-in operator, the device registry with enable/disable and move.
// Plain DOM and SVG, no library: everything the page needs is in this package.
"use strict";

const POLL_MS = 750;          // with the API's 1 s fleet cache: a change shows within 2 s
const DETAIL_POLL_MS = 5000;
const HISTORY_PAGES = 10;      // up to 10,000 buckets a day (one per second is 86,400: the newest win)
const FORECAST_MS = 30000;     // a trip's forecast is read again after this long
const NEXT_STOPS = 3;
const state = { token: sessionStorage.getItem("idToken"), email: sessionStorage.getItem("email"),
                selected: null, painted: false, authConfig: null, forecasts: new Map(), board: null };

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, Object.assign({ cache: "no-store" }, options, { headers }));
  if (response.status === 401 && state.token) signOut("your session ended: sign in again");
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response.json();
}

function ago(iso) {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

// ---- the fleet -------------------------------------------------------------------------

function renderTrains(trains) {
  const body = $("#trains tbody");
  const rows = new Map([...body.children].map((row) => [row.dataset.train, row]));
  trains.forEach((train, index) => {
    let row = rows.get(train.train_id);
    if (!row) {
      row = el("tr", { "data-train": train.train_id });
      row.addEventListener("click", () => selectTrain(train.train_id));
      for (let i = 0; i < 9; i++) row.append(el("td"));
      row.children[1].append(el("div", { class: "bar" }, el("div", { class: "fill" })));
      [2, 3, 4].forEach((i) => row.children[i].classList.add("num"));
      row.children[8].classList.add("next-stops");
    }
    rows.delete(train.train_id);
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
    const pct = train.occupancy_ratio == null ? null : Math.round(train.occupancy_ratio * 100);
    const cells = row.children;
    // The scheduled trip it runs now (the API's --gtfs_static): route and headsign.
    const trip = train.trip ? ` · ${train.trip.route_short_name || train.trip.route_id} → ${train.trip.headsign || train.trip.trip_id}` : "";
    cells[0].textContent = (train.name ? `${train.name} (${train.train_id})` : train.train_id) + trip;
    const fill = cells[1].querySelector(".fill");
    fill.className = `fill ${train.occupancy_status}`;
    fill.style.width = `${Math.min(100, pct ?? 0)}%`;
    fill.dataset.value = train.current_value ?? "";
    cells[2].textContent = train.current_value ?? "—";
    cells[3].textContent = train.capacity ?? "—";
    cells[4].textContent = pct == null ? "—" : `${pct}`;
    cells[5].textContent = train.occupancy_status.toLowerCase().replaceAll("_", " ");
    cells[6].textContent = ago(train.last_updated);
    cells[7].replaceChildren(el("span", { class: `badge ${train.status}` },
                                train.status === "no_data" ? "no data" : train.status));
    renderNextStops(cells[8], train);
    row.classList.toggle("selected", train.train_id === state.selected);
  });
  for (const gone of rows.values()) gone.remove();
  if (!state.painted) {
    state.painted = true;
    performance.mark("trains-painted");  // the browser test reads this as "first paint with data"
  }
}

async function pollTrains() {
  try {
    const body = await api("/v1/trains");
    body.trains.forEach((train) => { if (train.trip) loadForecast(train.trip.trip_id); });
    renderTrains(body.trains);
    $("#status").textContent = `${body.trains.length} trains, read ${new Date(body.generated_at).toLocaleTimeString()}`;
  } catch (error) {
    $("#status").textContent = `cannot load trains (${error.message})`;
  } finally {
    setTimeout(pollTrains, POLL_MS);
  }
}

// ---- the load ahead: next stops and a stop's departures ------------------------------------

function levelText(status) {
  return (status || "NO_DATA_AVAILABLE").toLowerCase().replaceAll("_", " ");
}

// Reads a trip's forecast at most every FORECAST_MS; the table shows what was read last.
async function loadForecast(tripId) {
  const cached = state.forecasts.get(tripId);
  if (cached && Date.now() - cached.at < FORECAST_MS) return;
  state.forecasts.set(tripId, { at: Date.now(), stops: cached ? cached.stops : null });
  try {
    const body = await api(`/v1/trips/${encodeURIComponent(tripId)}/forecast`);
    state.forecasts.set(tripId, { at: Date.now(), stops: body.stops });
  } catch (error) {  // 404: no forecast for this trip today
    state.forecasts.set(tripId, { at: Date.now(), stops: [], error: error.message });
  }
}

// The train's next NEXT_STOPS stops still to leave, each a button opening the stop's board.
function renderNextStops(cell, train) {
  const entry = train.trip ? state.forecasts.get(train.trip.trip_id) : null;
  const now = Date.now();
  const ahead = entry && entry.stops
    ? entry.stops.filter((s) => s.departure_time && Date.parse(s.departure_time) > now).slice(0, NEXT_STOPS) : [];
  const key = !train.trip ? "none" : !entry || !entry.stops ? "loading"
    : JSON.stringify(ahead.map((s) => [s.stop_id, s.occupancy_status, s.occupancy_percentage]));
  if (cell.dataset.key === key) return;
  cell.dataset.key = key;
  if (!ahead.length) {
    cell.textContent = key === "loading" ? "…" : train.trip && entry.error ? "no forecast" : "—";
    return;
  }
  cell.replaceChildren(...ahead.map((stop) => {
    const pct = stop.occupancy_percentage == null ? "" : ` ${stop.occupancy_percentage}%`;
    const button = el("button", { type: "button", class: "next-stop", "data-stop": stop.stop_id,
                                  "data-level": stop.occupancy_status || "NO_DATA_AVAILABLE",
                                  title: `${levelText(stop.occupancy_status)} as it leaves` },
                      el("span", { class: `swatch ${stop.occupancy_status || "NO_DATA_AVAILABLE"}` }),
                      (stop.stop_name || stop.stop_id) + pct);
    button.addEventListener("click", (event) => { event.stopPropagation(); showBoard(stop.stop_id); });
    return button;
  }));
}

async function showBoard(stopId) {
  state.board = stopId;
  $("#departures").hidden = false;
  await loadBoard();
}

async function loadBoard() {
  const stopId = state.board;
  if (!stopId) return;
  try {
    const body = await api(`/v1/stops/${encodeURIComponent(stopId)}/departures?limit=8`);
    if (state.board !== stopId) return;
    $("#departures-error").textContent = "";
    $("#departures-title").textContent = `Departures from ${body.stop_name || stopId}`;
    $("#board tbody").replaceChildren(...body.departures.map((d) => el("tr", { "data-trip": d.trip_id },
      el("td", {}, new Date(d.departure_time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      el("td", {}, `${d.route_short_name || d.route_id} (${d.trip_id})`),
      el("td", {}, d.headsign || ""),
      el("td", { "data-level": d.occupancy_status }, el("span", { class: `swatch ${d.occupancy_status}` }),
         levelText(d.occupancy_status)),
      el("td", { class: "num" }, d.occupancy_percentage ?? "—"))));
  } catch (error) {
    $("#departures-error").textContent = error.message;
  }
}

// ---- one train: history chart and devices ------------------------------------------------

async function selectTrain(trainId) {
  state.selected = trainId;
  document.querySelectorAll("#trains tbody tr").forEach((row) =>
    row.classList.toggle("selected", row.dataset.train === trainId));
  $("#detail").hidden = false;
  await loadDetail();
}

async function loadDetail() {
  const trainId = state.selected;
  if (!trainId) return;
  const midnight = new Date();
  midnight.setUTCHours(0, 0, 0, 0);
  try {
    const train = await api(`/v1/trains/${encodeURIComponent(trainId)}`);
    let items = [], cursor = null;
    for (let page = 0; page < HISTORY_PAGES; page++) {
      const query = new URLSearchParams({ from: midnight.toISOString(), limit: "1000" });
      if (cursor) query.set("cursor", cursor);
      const body = await api(`/v1/trains/${encodeURIComponent(trainId)}/history?${query}`);
      items = items.concat(body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    if (state.selected !== trainId) return;
    $("#detail-title").textContent = `${train.name || trainId}: ${train.current_value ?? "—"} on board`;
    $("#chart").replaceChildren(chart(items, train.capacity));
    $("#train-devices tbody").replaceChildren(...train.devices.map((d) =>
      el("tr", {}, el("td", {}, d.device_id), el("td", {}, ago(d.last_seen)), el("td", { class: "num" }, d.seq ?? "—"))));
  } catch (error) {
    $("#detail-title").textContent = `${trainId}: ${error.message}`;
  }
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// Occupancy (line), boardings up and alightings down (bars) per history bucket, corrections ▲.
function chart(items, capacity) {
  const W = 900, H = 260, top = 14, mid = 190, bottom = 250, left = 40;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-points": items.length });
  if (!items.length) {
    const text = svg("text", { x: left, y: 40 });
    text.textContent = "no history today";
    root.append(text);
    return root;
  }
  const times = items.map((i) => Date.parse(i.timestamp));
  // From the first bucket of the day to now: the count holds until the next bucket (a step line).
  const t0 = Math.min(...times), t1 = Math.max(Date.now(), ...times, t0 + 60000);
  const maxValue = Math.max(1, capacity || 0, ...items.map((i) => i.value));
  const maxFlow = Math.max(1, ...items.map((i) => Math.max(i.boarded, i.alighted)));
  const x = (t) => left + (W - left - 10) * (t - t0) / (t1 - t0);
  const y = (v) => mid - (mid - top) * v / maxValue;
  const flow = (v) => (bottom - mid - 8) / 2 * v / maxFlow;
  const flowAxis = mid + 4 + (bottom - mid - 8) / 2;
  root.append(svg("line", { class: "axis", x1: left, x2: W - 10, y1: mid, y2: mid }));
  root.append(svg("line", { class: "axis", x1: left, x2: W - 10, y1: flowAxis, y2: flowAxis }));
  const label = (text, x0, y0) => { const t = svg("text", { x: x0, y: y0 }); t.textContent = text; root.append(t); };
  label(String(maxValue), 2, top + 4);
  label("0", 2, mid);
  label(new Date(t0).toISOString().slice(11, 16), left, H - 1);
  label(new Date(t1).toISOString().slice(11, 16) + " UTC", W - 80, H - 1);
  const barWidth = Math.max(1, (W - left) / Math.max(60, items.length) * 0.8);
  items.forEach((item, k) => {
    const px = x(times[k]);
    if (item.boarded) root.append(svg("rect", { class: "boarded", x: px, width: barWidth,
                                                 y: flowAxis - flow(item.boarded), height: flow(item.boarded) }));
    if (item.alighted) root.append(svg("rect", { class: "alighted", x: px, width: barWidth,
                                                  y: flowAxis, height: flow(item.alighted) }));
    if (item.correction) {
      const mark = svg("path", { class: "correction", d: `M${px - 5},${mid + 2} l5,-9 l5,9 z` });
      const title = svg("title");
      title.textContent = `correction ${item.correction} at ${item.timestamp}`;
      mark.append(title);
      root.append(mark);
    }
  });
  const d = items.map((item, k) => `${k ? "H" + x(times[k]).toFixed(1) + " V" : "M" + x(times[k]).toFixed(1) + ","}`
                                   + y(item.value).toFixed(1)).join(" ") + ` H${x(t1).toFixed(1)}`;
  root.append(svg("path", { class: "value", d }));
  return root;
}

// ---- operators -----------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  $("#auth-error").textContent = "";
  try {
    state.authConfig = state.authConfig || await api("/v1/auth/config");
    const response = await fetch(`${state.authConfig.sign_in_url}?key=${encodeURIComponent(state.authConfig.api_key)}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: $("#email").value, password: $("#password").value, returnSecureToken: true }) });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    state.token = body.idToken;
    state.email = body.email;
    sessionStorage.setItem("idToken", state.token);
    sessionStorage.setItem("email", state.email);
    showAccount();
  } catch (error) {
    $("#auth-error").textContent = `sign-in failed: ${error.message}`;
  }
}

function signOut(message = "") {
  state.token = state.email = null;
  sessionStorage.removeItem("idToken");
  sessionStorage.removeItem("email");
  $("#auth-error").textContent = message;
  showAccount();
}

function showAccount() {
  const signedIn = Boolean(state.token);
  $("#sign-in").hidden = signedIn;
  $("#signed-in").hidden = !signedIn;
  $("#who").textContent = state.email || "";
  $("#operator").hidden = !signedIn;
  if (signedIn) loadDevices();
}

async function loadDevices() {
  if (!state.token) return;
  try {
    const body = await api("/v1/devices");
    $("#operator-error").textContent = "";
    renderDevices(body.devices);
  } catch (error) {
    $("#operator-error").textContent = error.message.startsWith("403")
      ? "this account is not an operator: device data needs the operator role" : error.message;
    $("#devices tbody").replaceChildren();
  }
}

// Rows are updated in place, so a refresh never wipes a train id being typed.
function renderDevices(devices) {
  const body = $("#devices tbody");
  const rows = new Map([...body.children].map((row) => [row.dataset.device, row]));
  devices.forEach((device, index) => {
    const row = rows.get(device.device_id) || deviceRow(device.device_id);
    rows.delete(device.device_id);
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
    const cells = row.children;
    cells[1].textContent = device.train_id ?? "—";
    cells[2].textContent = device.door ?? "—";
    cells[3].textContent = device.enabled ? "yes" : "no";
    cells[4].textContent = ago(device.last_seen);
    const toggle = cells[5].querySelector("button.toggle");
    toggle.dataset.action = device.enabled ? "disable" : "enable";
    toggle.textContent = device.enabled ? "Disable" : "Enable";
  });
  for (const gone of rows.values()) gone.remove();
}

function deviceRow(deviceId) {
  const id = encodeURIComponent(deviceId);
  const toggle = el("button", { type: "button", class: "toggle" });
  toggle.addEventListener("click", () => act(`/v1/devices/${id}/${toggle.dataset.action}`, { method: "POST" }));
  const target = el("input", { size: 10, placeholder: "train id", "data-role": "move-to" });
  const move = el("button", { type: "button", "data-action": "move" }, "Move");
  move.addEventListener("click", async () => {
    if (await act(`/v1/devices/${id}/train`, { method: "PUT", body: JSON.stringify({ train_id: target.value.trim() }) })) {
      target.value = "";
    }
  });
  return el("tr", { "data-device": deviceId }, el("td", {}, deviceId), el("td"), el("td"), el("td"), el("td"),
            el("td", {}, toggle, " ", target, move));
}

async function act(path, options) {
  try {
    await api(path, options);
    await loadDevices();
    return true;
  } catch (error) {
    $("#operator-error").textContent = error.message;
    return false;
  }
}

$("#sign-in").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", () => signOut());
showAccount();
pollTrains();
setInterval(loadDetail, DETAIL_POLL_MS);
setInterval(loadBoard, DETAIL_POLL_MS);
setInterval(loadDevices, DETAIL_POLL_MS);
