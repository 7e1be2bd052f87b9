// The dashboard: polls /ui/api/v1/status and /ui/api/v1/events once a
// second (one request at a time, so a slow agent is never piled on) and
// draws them; buttons ask for confirmation, then call the API.
"use strict";
let csrf = "";
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function ago(t) {
  if (!t || t.startsWith("0001")) return "";
  const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  const d = new Date(t).toISOString().replace("T", " ").replace(/\..*/, "");
  return d + " (" + (s < 120 ? Math.round(s) + " s" : s < 7200 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h") + " ago)";
}
function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c ?? "";
    tr.appendChild(td);
  }
  return tr;
}
function button(label, question, path, body) {
  const b = el("button", label);
  b.dataset.action = label;
  b.onclick = () => confirmThen(question, () => post(path, body));
  return b;
}
function confirmThen(question, f) {
  const d = $("confirm");
  $("confirm-text").textContent = question;
  d.onclose = () => { if (d.returnValue === "ok") f(); };
  d.returnValue = "";
  d.showModal();
}
async function post(path, body) {
  const r = await fetch("/ui/api" + path, {method: "POST", headers: {"Content-Type": "application/json", "X-Tandem-CSRF": csrf}, body: JSON.stringify(body)});
  const j = await r.json().catch(() => ({}));
  if (!r.ok) alert(path + ": " + (j.error || r.status));
  poll();
}

function draw(st, evs) {
  $("cluster").textContent = st.cluster + " (seen from " + st.node + ")";
  const q = $("quorum");
  q.textContent = st.quorum ? "quorum, leader " + st.leader : "NO QUORUM";
  q.className = st.quorum ? "ok" : "bad";
  const nodes = (st.nodes || []).filter((n) => n.role !== "witness").map((n) => n.name);

  const gb = $("groups").tBodies[0];
  gb.replaceChildren();
  for (const g of st.groups || []) {
    const state = g.phase || (g.running ? "running" : "stopped");
    const tr = row([g.name, g.holder || "—", ago(g.since), String(g.epoch),
      el("span", state + (g.blocked ? " (blocked: " + g.blocked + ")" : ""), state === "running" ? "ok" : "bad"),
      g.last_takeover ? JSON.stringify(g.last_takeover) : ""]);
    tr.dataset.group = g.name;
    tr.dataset.holder = g.holder || "";
    const td = el("td");
    for (const n of nodes) {
      if (n !== g.holder) td.appendChild(button("switch to " + n, "Switch " + g.name + " over to " + n + "?", "/v1/groups/" + encodeURIComponent(g.name) + "/failover", {to: n}));
    }
    tr.appendChild(td);
    gb.appendChild(tr);
  }

  const nb = $("nodes").tBodies[0];
  nb.replaceChildren();
  for (const n of st.nodes || []) {
    const flags = [n.standby && "standby", n.maintenance && "maintenance", n.leaving && "leaving", n.config_differs && "config differs"].filter(Boolean).join(", ");
    const links = (n.links || []).map((l) => "link " + l.index + (l.up ? " up " + l.rtt_ms.toFixed(2) + " ms" : " DOWN") + (l.loss ? " loss " + (100 * l.loss).toFixed(0) + " %" : "")).join("; ");
    const td = el("td");
    if (n.role !== "witness") {
      td.appendChild(n.standby ? button("unstandby", "Take " + n.name + " out of standby?", "/v1/nodes/" + encodeURIComponent(n.name) + "/standby", {on: false})
        : button("standby", "Put " + n.name + " in standby (its groups move away)?", "/v1/nodes/" + encodeURIComponent(n.name) + "/standby", {on: true}));
      td.appendChild(n.maintenance ? button("end maintenance", "End maintenance of " + n.name + "?", "/v1/maintenance", {on: false, node: n.name})
        : button("maintenance", "Put " + n.name + " in maintenance (resources left unmanaged)?", "/v1/maintenance", {on: true, node: n.name}));
    }
    nb.appendChild(row([n.name + (n.self ? " (this)" : ""), n.role, el("span", n.up ? "up" : "DOWN", n.up ? "ok" : "bad"), flags, links, td]));
  }

  const vb = $("volumes").tBodies[0];
  vb.replaceChildren();
  for (const v of st.volumes || []) {
    const reps = Object.entries(v.replicas || {}).map(([n, r]) => n + ": " + r.disk).join(", ");
    const l = v.local;
    const here = l ? l.role + "/" + l.disk + ", peer " + l.peer_role + "/" + l.peer_disk + ", " + l.connection : "";
    const sync = l ? (l.sync || "") + (l.resync_percent ? " " + l.resync_percent.toFixed(1) + " %" + (l.resync_eta ? " eta " + l.resync_eta : "") : "") + (l.out_of_sync_bytes ? " lag " + l.out_of_sync_bytes + " B" : "") : "";
    const good = reps && !/Outdated|Inconsistent|Failed|Diskless/.test(reps);
    vb.appendChild(row([v.name, v.group, el("span", reps, good ? "ok" : "bad"), here, sync]));
  }

  const tl = $("timeline");
  tl.replaceChildren();
  for (const e of (evs || []).slice().reverse()) {
    const li = el("li", e.time.replace("T", " ").replace(/Z$/, "") + "  " + e.kind + "  " + [e.group, e.subject, e.node && "on " + e.node, e.message].filter(Boolean).join("  "));
    li.dataset.kind = e.kind;
    tl.appendChild(li);
  }
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// raidArrays reads the tandem_raid_* gauges of a /metrics text by array.
function raidArrays(text) {
  const arrays = {};
  const re = /^tandem_raid_(members_in_sync|members_slots|degraded|rebuild_progress_ratio|mismatched_stripes)\{[^}]*array="([^"]*)"[^}]*\} (\S+)$/gm;
  for (const m of text.matchAll(re)) {
    (arrays[m[2]] ??= {})[m[1]] = Number(m[3]);
  }
  return arrays;
}
function drawRaid(arrays) {
  const rb = $("raid").tBodies[0];
  rb.replaceChildren();
  for (const [name, a] of Object.entries(arrays).sort()) {
    const ok = !a.degraded;
    rb.appendChild(row([name, (a.members_in_sync ?? "?") + " / " + (a.members_slots ?? "?"), el("span", ok ? "healthy" : "DEGRADED", ok ? "ok" : "bad"),
      a.rebuild_progress_ratio ? (100 * a.rebuild_progress_ratio).toFixed(1) + " %" : "", String(a.mismatched_stripes ?? "")]));
  }
  if (!rb.rows.length) rb.appendChild(row(["none"]));
}

// The metrics (for the RAID arrays) every fifth poll: they are larger.
let polls = 0;
async function pollRaid() {
  if (polls++ % 5 !== 0) return;
  const m = await fetch("/ui/api/metrics");
  if (m.ok) drawRaid(raidArrays(await m.text()));
}

let busy = false, lastSig = "", lastEvents = 0, timeline = [];
async function poll() {
  if (busy) return;
  busy = true;
  try {
    const s = await fetch("/ui/api/v1/status");
    if (s.status === 401) { location.href = "/ui/login"; return; }
    if (s.ok) {
      const st = await s.json();
      // The agent reads its whole audit log for each events request, so
      // the timeline is fetched when the state changed, else every 15 s.
      const sig = JSON.stringify([st.leader, st.groups, (st.nodes || []).map((n) => [n.name, n.up, n.standby, n.maintenance, (n.links || []).map((l) => l.up)]), (st.volumes || []).map((v) => v.replicas)]);
      if (sig !== lastSig || Date.now() - lastEvents > 15000) {
        const e = await fetch("/ui/api/v1/events?since=24h&limit=50");
        if (e.ok) { timeline = await e.json(); lastSig = sig; lastEvents = Date.now(); }
      }
      draw(st, timeline);
    }
    await pollRaid();
  } catch (err) {
    $("updated").textContent = "agent unreachable: " + err;
  } finally {
    busy = false;
  }
}

(async () => {
  const r = await fetch("/ui/session");
  if (!r.ok) { location.href = "/ui/login"; return; }
  csrf = (await r.json()).csrf;
  $("logout").onclick = async () => { await fetch("/ui/logout", {method: "POST", headers: {"X-Tandem-CSRF": csrf}}); location.href = "/ui/login"; };
  poll();
  setInterval(poll, 1000);
})();
