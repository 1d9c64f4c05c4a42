"use strict";
(function () {
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const params = new URLSearchParams(location.search);
  const st = {
    sort: params.get("sort") || "name",
    q: params.get("q") || "",
    operator: params.get("operator") || "",
    account: params.get("account") || "",
    state: params.get("state") || "",
    offset: parseInt(params.get("offset") || "0", 10) || 0,
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const group = (n) => n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const bytes = (n) => {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = n;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return i === 0 ? n + " B" : v.toFixed(1) + " " + u[i];
  };
  const ago = (now, t) => {
    const s = Math.max(0, Math.floor(now - t));
    if (s < 10) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  };
  const left = (now, t) => {
    const s = t - now;
    if (s < 0) return "expired";
    if (s < 3600) return Math.ceil(s / 60) + " min left";
    if (s < 172800) return Math.floor(s / 3600) + " h left";
    return Math.floor(s / 86400) + " d left";
  };
  const dash = () => el("span", "muted", "–");

  function query() {
    const p = new URLSearchParams();
    for (const k of ["sort", "q", "operator", "account", "state"]) if (st[k] && !(k === "sort" && st[k] === "name")) p.set(k, st[k]);
    if (st.offset) p.set("offset", String(st.offset));
    return p;
  }

  function row(l, now) {
    const tr = el("tr");
    if (l.low) tr.classList.add("low");
    if (l.state === "failing") tr.classList.add("failing");
    tr.dataset.line = l.name;
    const th = el("th", "c-name");
    const open = el("button", "line", l.name);
    open.type = "button";
    open.title = "Recent polls of " + l.name;
    th.append(open);
    th.scope = "row";
    tr.append(th, el("td", "c-op", l.operator), el("td", "c-acct", l.account));
    const r = l.reading || {};
    const bal = el("td", "c-num");
    if (r.balance != null) { bal.append(group(r.balance) + " ", el("small", "", r.currency || "")); } else bal.append(dash());
    const data = el("td", "c-data");
    if (r.data_remaining_bytes != null) {
      if (r.data_quota_bytes) {
        const pct = Math.max(0, Math.min(100, (r.data_remaining_bytes / r.data_quota_bytes) * 100));
        const bar = el("div", "bar" + (l.low_data ? " low" : ""));
        bar.setAttribute("role", "img");
        bar.setAttribute("aria-label", pct.toFixed(0) + "% left");
        const fill = el("span");
        fill.style.width = pct.toFixed(1) + "%";
        bar.append(fill);
        const dt = el("span", "dt", bytes(r.data_remaining_bytes) + " ");
        dt.append(el("span", "muted", "of " + bytes(r.data_quota_bytes)));
        data.append(bar, dt);
      } else data.append(el("span", "dt", bytes(r.data_remaining_bytes)));
    } else data.append(dash());
    const exp = el("td", "c-exp");
    if (r.quota_expiry_timestamp != null) exp.textContent = left(now, r.quota_expiry_timestamp); else exp.append(dash());
    const last = el("td", "c-ago");
    if (l.last_success_timestamp != null) last.textContent = ago(now, l.last_success_timestamp); else last.append(el("span", "muted", "never"));
    const status = el("td", "c-status");
    const label = l.state === "ok" && l.low ? "low" : l.state;
    status.append(el("span", "badge " + label, label));
    const err = el("td", "c-err");
    if (l.last_error) err.append(el("span", "reason", l.last_error.reason), " " + l.last_error.message + " ", el("span", "muted", "(" + ago(now, l.last_error.timestamp) + ")"));
    tr.append(bal, data, exp, last, status, err);
    return tr;
  }

  function tiles(s) {
    const set = (id, v, tone) => {
      const t = $("tile-" + id);
      if (!t) return;
      t.querySelector(".v").textContent = String(v);
      t.className = "tile " + tone;
    };
    set("lines", s.lines, "");
    set("pending", s.pending, s.pending ? "info" : "");
    set("failing", s.failing, s.failing ? "bad" : "good");
    set("low-balance", s.low_balance, s.low_balance ? "warn" : "good");
    set("low-data", s.low_data, s.low_data ? "warn" : "good");
    for (const b of s.balances) {
      const t = document.querySelector('.tile.money[data-currency="' + CSS.escape(b.currency) + '"] .v');
      if (t) t.firstChild.textContent = group(b.total) + " ";
    }
  }

  // The per-line detail: the line's facts and its last polls (api/v1/line), with inline SVG
  // sparklines of balance and data left; failed polls are red marks under the lines.
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  };
  function sparkline(polls, pick, cls, label, fmt) {
    const w = 300, h = 48, pad = 4;
    const fig = el("figure", "spark");
    const values = polls.map(pick);
    const known = values.filter((v) => v != null);
    const cap = el("figcaption", "", label + " ");
    const s = svg("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", class: "spark " + cls, role: "img" });
    if (known.length) {
      const min = Math.min(...known), max = Math.max(...known);
      const n = Math.max(1, polls.length - 1);
      const x = (i) => (polls.length === 1 ? w / 2 : pad + (i / n) * (w - 2 * pad));
      const y = (v) => (max === min ? h / 2 : pad + (1 - (v - min) / (max - min)) * (h - 3 * pad));
      const pts = [];
      values.forEach((v, i) => { if (v != null) pts.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); });
      // One known value is a level, not a point: a one-point polyline has no extent and the
      // browser does not draw it, so it is held across the width.
      if (pts.length === 1) pts.splice(0, 1, pad + "," + pts[0].split(",")[1], (w - pad) + "," + pts[0].split(",")[1]);
      s.append(svg("polyline", { points: pts.join(" ") }));
      const last = values.length - 1 - [...values].reverse().findIndex((v) => v != null);
      s.append(svg("circle", { cx: x(last).toFixed(1), cy: y(values[last]).toFixed(1), r: 2.5 }));
      polls.forEach((p, i) => { if (!p.success) s.append(svg("rect", { class: "fail", x: (x(i) - 1.5).toFixed(1), y: h - 4, width: 3, height: 4 })); });
      cap.append(el("b", "", fmt(known[known.length - 1])), el("span", "muted", " · " + fmt(min) + " – " + fmt(max)));
      s.setAttribute("aria-label", label + " over the last " + polls.length + " polls: from " + fmt(known[0]) + " to " + fmt(known[known.length - 1]));
    } else {
      cap.append(el("span", "muted", "not reported"));
      s.setAttribute("aria-label", label + ": not reported");
    }
    fig.append(cap, s);
    return fig;
  }
  let shown = null;
  async function detail(name) {
    const dlg = $("detail"), body = $("detail-body");
    let d;
    try {
      const res = await fetch("api/v1/line?line=" + encodeURIComponent(name), { headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(await res.text());
      d = await res.json();
    } catch (e) {
      body.replaceChildren(el("h2", "", name), el("p", "alert", "Cannot load the line: " + e.message));
      if (!dlg.open) dlg.showModal();
      return;
    }
    shown = name;
    const l = d.line, polls = d.history.polls, r = l.reading || {};
    const h2 = el("h2", "", l.name);
    h2.id = "detail-name";
    const facts = el("dl", "facts");
    const fact = (k, v) => { if (v != null && v !== "") facts.append(el("dt", "", k), el("dd", "", String(v))); };
    fact("Operator", l.operator);
    fact("Account", l.account);
    fact("Driver", l.driver);
    fact("MSISDN", l.msisdn);
    fact("Plan", r.plan);
    fact("Status", l.state === "ok" && l.low ? "low" : l.state);
    for (const k in l.labels) fact(k, l.labels[k]);
    if (l.last_error && l.state === "failing") fact("Last error", l.last_error.reason + ": " + l.last_error.message);
    const sparks = el("div", "sparks");
    const cur = r.currency ? " " + r.currency : "";
    sparks.append(
      sparkline(polls, (p) => p.balance, "balance", "Balance", (v) => group(v) + cur),
      sparkline(polls, (p) => p.data_remaining_bytes, "data", "Data left", bytes),
    );
    const ok = polls.filter((p) => p.success).length;
    const summary = el("p", "muted", polls.length ? "Last " + polls.length + " polls (up to " + d.history.capacity + " kept): " + ok + " succeeded, " + (polls.length - ok) + " failed." : "No poll yet.");
    const table = el("table", "polls");
    const now = Date.now() / 1000;
    table.append(el("caption", "sr", "Recent polls, newest first"));
    for (const p of polls.slice(-8).reverse()) {
      const tr = el("tr");
      tr.append(el("td", "", ago(now, p.timestamp)), el("td", "", p.success ? "ok" : ""));
      if (!p.success) tr.lastChild.append(el("span", "reason", p.reason || "failed"));
      tr.append(el("td", "c-num", p.balance != null ? group(p.balance) + cur : "–"), el("td", "c-num", p.data_remaining_bytes != null ? bytes(p.data_remaining_bytes) : "–"));
      table.append(tr);
    }
    body.replaceChildren(h2, facts, sparks, summary, table);
    if (!dlg.open) dlg.showModal();
  }
  $("rows").addEventListener("click", (e) => {
    const b = e.target.closest("button.line");
    if (b) detail(b.textContent);
  });
  $("detail").addEventListener("close", () => { shown = null; });

  let timer = null, seq = 0;
  async function load() {
    const mine = ++seq;
    const p = query();
    p.set("limit", String(cfg.pageRows));
    let body;
    try {
      const res = await fetch("api/v1/lines?" + p.toString(), { headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(await res.text());
      body = await res.json();
    } catch (e) {
      $("updated").textContent = "Update failed: " + e.message;
      return schedule();
    }
    if (mine !== seq) return;
    const now = body.summary.generated_at;
    const tbody = $("rows");
    const frag = document.createDocumentFragment();
    for (const l of body.lines) frag.append(row(l, now));
    if (!body.lines.length) { const tr = el("tr", "empty"); const td = el("td", "", "No line matches."); td.colSpan = 9; tr.append(td); frag.append(tr); }
    tbody.replaceChildren(frag);
    tiles(body.summary);
    const from = body.total ? body.offset + 1 : 0;
    $("range").textContent = from + "–" + Math.min(body.offset + body.lines.length, body.total) + " of " + body.total;
    $("prev").disabled = body.offset === 0;
    $("next").disabled = body.offset + body.lines.length >= body.total;
    $("updated").textContent = "Updated " + new Date(now * 1000).toLocaleTimeString();
    document.body.dataset.loaded = String(mine);
    if (shown && $("detail").open) detail(shown);
    schedule();
  }
  function schedule() {
    clearTimeout(timer);
    if ($("auto").checked) timer = setTimeout(load, cfg.refreshSeconds * 1000);
  }
  function changed() {
    history.replaceState(null, "", "?" + query().toString());
    markSort();
    load();
  }
  function markSort() {
    const key = st.sort.replace(/^-/, "");
    for (const b of document.querySelectorAll("thead button[data-sort]")) {
      const th = b.parentElement;
      if (b.dataset.sort === key) th.setAttribute("aria-sort", st.sort.startsWith("-") ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }
  for (const b of document.querySelectorAll("thead button[data-sort]")) {
    b.addEventListener("click", () => {
      const k = b.dataset.sort;
      st.sort = st.sort === k ? "-" + k : k;
      st.offset = 0;
      changed();
    });
  }
  let typing = null;
  $("q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { st.q = $("q").value.trim(); st.offset = 0; changed(); }, 200);
  });
  for (const id of ["operator", "account", "state"]) {
    $(id).addEventListener("change", () => { st[id] = $(id).value; st.offset = 0; changed(); });
  }
  for (const t of document.querySelectorAll("button.tile")) {
    t.addEventListener("click", () => { st.state = t.dataset.state; $("state").value = st.state; st.offset = 0; changed(); });
  }
  $("prev").addEventListener("click", () => { st.offset = Math.max(0, st.offset - cfg.pageRows); changed(); });
  $("next").addEventListener("click", () => { st.offset += cfg.pageRows; changed(); });
  $("auto").addEventListener("change", schedule);
  window.esimRefresh = load;
  markSort();
  load();
})();
