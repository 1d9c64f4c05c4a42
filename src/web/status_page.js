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
    const th = el("th", "c-name", l.name);
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
