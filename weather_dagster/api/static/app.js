// The page: latest round's leaderboard, the selected miner's ERA5 score per lead, and its timeline.
// Plain fetch() against the API of the same origin; no build step, no libraries.
"use strict";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);

async function get(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function all(path) {
  // Follow next_cursor to the end (keyset pages).
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

function fmt(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function renderLeaderboard(entries, runId, selected) {
  const body = $("#leaderboard tbody");
  body.replaceChildren();
  for (const entry of entries) {
    const row = document.createElement("tr");
    row.dataset.uid = entry.uid;
    row.dataset.rank = entry.rank;
    if (entry.uid === selected) row.classList.add("selected");
    cell(row, entry.rank);
    cell(row, entry.uid);
    cell(row, `${entry.hotkey.slice(0, 10)}${entry.hotkey.length > 10 ? "…" : ""}`);
    cell(row, fmt(entry.overall));
    row.addEventListener("click", () => selectMiner(runId, entry.uid, entries));
    body.appendChild(row);
  }
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderLeads(scores) {
  const chart = $("#leads");
  chart.replaceChildren();
  const leads = scores
    .filter((s) => s.score_type === "era5" && s.variable === null)
    .sort((a, b) => a.lead_hours - b.lead_hours);
  const width = 460, height = 220, left = 36, bottom = 28, top = 10;
  const plotH = height - bottom - top;
  const step = leads.length ? (width - left - 8) / leads.length : 0;
  chart.appendChild(svg("line", { x1: left, y1: top + plotH, x2: width - 4, y2: top + plotH, stroke: "#999" }));
  for (const tick of [0, 0.5, 1]) {
    const y = top + plotH * (1 - tick);
    chart.appendChild(svg("text", { x: 4, y: y + 4, "font-size": 11, fill: "#6b7685" }, tick.toFixed(1)));
  }
  leads.forEach((s, i) => {
    const value = Math.max(0, Math.min(1, s.score ?? 0));
    const x = left + i * step + 3;
    const h = plotH * value;
    chart.appendChild(
      svg("rect", {
        x, y: top + plotH - h, width: Math.max(2, step - 6), height: h, fill: "#457b9d",
        "data-lead": s.lead_hours, "data-score": fmt(s.score, 4),
      }),
    );
    chart.appendChild(svg("text", { x: x, y: height - 10, "font-size": 11, fill: "#1d2430" }, `${s.lead_hours}h`));
  });
  const day1 = scores.find((s) => s.score_type === "day1" && s.variable === null);
  $("#day1").textContent = `Day1 score: ${fmt(day1 ? day1.score : null)} · ERA5 leads scored: ${leads.length}`;
}

function renderTimeline(events) {
  const list = $("#timeline");
  list.replaceChildren();
  for (const e of events) {
    const item = document.createElement("li");
    item.dataset.step = e.step;
    item.dataset.status = e.status;
    const badge = document.createElement("span");
    badge.className = `badge ${e.status}`;
    badge.textContent = e.status;
    item.appendChild(badge);
    const lead = e.step === "era5" ? ` +${e.lead_hours}h` : "";
    const error = e.error && e.error.message ? ` — ${e.error.message}` : "";
    item.appendChild(document.createTextNode(` ${e.step}${lead} · ${e.at ? e.at.slice(0, 16) : "–"}${error}`));
    list.appendChild(item);
  }
}

async function selectMiner(runId, uid, entries) {
  renderLeaderboard(entries, runId, uid);
  $("#leads-miner").textContent = `(uid ${uid})`;
  $("#timeline-miner").textContent = `(uid ${uid}, round ${runId})`;
  const [scores, events] = await Promise.all([
    all(`/api/v1/rounds/${runId}/miners/${uid}/scores`),
    all(`/api/v1/rounds/${runId}/miners/${uid}/timeline`),
  ]);
  renderLeads(scores);
  renderTimeline(events);
}

async function main() {
  const rounds = await get("/api/v1/rounds?limit=1");
  if (!rounds.items.length) {
    $("#round").textContent = "no round yet";
    return;
  }
  const run = params.get("run") ? await get(`/api/v1/rounds/${Number(params.get("run"))}`) : rounds.items[0];
  $("#round").textContent = `Round ${run.run_id} · GFS init ${run.gfs_init_time.slice(0, 16)}Z · ${run.status}`;
  let entries;
  try {
    entries = (await get(`/api/v1/rounds/${run.run_id}/snapshot`)).summary.leaderboard;
  } catch (err) {
    const miners = await all(`/api/v1/rounds/${run.run_id}/miners`);
    entries = miners
      .filter((m) => m.rank !== null)
      .sort((a, b) => a.rank - b.rank)
      .map((m) => ({ rank: m.rank, uid: m.uid, hotkey: m.hotkey, overall: m.overall_score }));
  }
  const wanted = params.get("uid") !== null ? Number(params.get("uid")) : entries.length ? entries[0].uid : null;
  renderLeaderboard(entries, run.run_id, wanted);
  if (wanted !== null) await selectMiner(run.run_id, wanted, entries);
}

main()
  .then(() => { $("#state").dataset.state = "ready"; $("#state").textContent = "ready"; })
  .catch((err) => { $("#state").dataset.state = "error"; $("#state").textContent = `error: ${err.message}`; });
