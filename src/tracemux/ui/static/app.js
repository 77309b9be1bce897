// tracemux viewer: the runs list and a run's waterfall, over the JSON API of tracemux.ui.server.
//
// Everything shown is user data (span names, inputs, outputs, logs): the DOM is built with
// createElement and textContent only; this file never assigns HTML from strings.
"use strict";

(function () {
  const POLL_MS = 2000;
  const PAGE_SIZE = 50;
  const FOLD_CHARS = 400; // strings longer than this are folded
  const MAX_ITEMS = 200; // entries of an object or array shown before "show more"
  const OPEN_DEPTH = 3; // JSON nodes nested deeper than this start closed
  const KINDS = new Set([
    "chain", "llm", "tool", "retriever", "embedding", "agent",
    "prompt", "parser", "guardrail", "evaluator", "custom",
  ]);
  const STATUSES = new Set(["ok", "partial", "error", "running"]);
  const SORTABLE = new Set(["start", "duration", "spans", "tokens"]);

  const app = document.getElementById("app");
  const liveEl = document.getElementById("live");
  const storeEl = document.getElementById("store");

  let info = null; // /api/info: the store, and the token a delete must carry
  let generation = 0; // bumped on every route change: work of an older view stops
  let pollTimer = null;
  let lastListQuery = "";

  // -- DOM helpers ---------------------------------------------------------------------------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") el.className = value;
        else if (key === "dataset") {
          for (const [k, v] of Object.entries(value)) {
            if (v !== null && v !== undefined) el.dataset[k] = String(v);
          }
        } else if (key === "on") {
          for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
        } else if (key === "style") {
          for (const [k, v] of Object.entries(value)) el.style[k] = v;
        } else el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(el, child);
      else if (child instanceof Node) el.appendChild(child);
      else el.appendChild(document.createTextNode(String(child)));
    }
  }

  function kindClass(kind) {
    return "kind-" + (KINDS.has(kind) ? kind : "custom");
  }

  function statusPill(status, title) {
    const cls = STATUSES.has(status) ? status : "other";
    return h("span", { class: "pill status-" + cls, title: title || null }, status);
  }

  function runHref(runId, spanId) {
    const base = "/runs/" + encodeURIComponent(runId);
    return spanId ? base + "?span=" + encodeURIComponent(spanId) : base;
  }

  function listHref(filters) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    const s = q.toString();
    return "/" + (s ? "?" + s : "");
  }

  // -- formatting ----------------------------------------------------------------------------

  const pad = (n, w) => String(n).padStart(w || 2, "0");

  function fmtInt(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  function fmtDur(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "—";
    if (ms < 1) return Math.round(ms * 1000) + " µs";
    if (ms < 10) return ms.toFixed(1) + " ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
    const m = Math.floor(ms / 60000);
    return m + " m " + Math.round((ms - m * 60000) / 1000) + " s";
  }

  function nsDate(ns) {
    return new Date(Number(ns) / 1e6);
  }

  function clock(d) {
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fullTime(ns) {
    const d = nsDate(ns);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      clock(d) + "." + pad(d.getMilliseconds(), 3);
  }

  // US dollars: a cost {usd, unpriced} or a number; "—" when unknown (never a guess), a
  // trailing "+" when some models of the run had no price.
  function fmtUsd(cost) {
    const usd = cost !== null && typeof cost === "object" ? cost.usd : cost;
    if (usd === null || usd === undefined) return "—";
    let text;
    if (usd === 0) text = "$0";
    else if (usd < 0.01) text = "$" + usd.toFixed(6).replace(/0+$/, "");
    else if (usd < 1) text = "$" + usd.toFixed(4);
    else text = "$" + usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return cost !== null && typeof cost === "object" && cost.unpriced ? text + "+" : text;
  }

  const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  function dateTime(ns) {
    const d = nsDate(ns);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(d);
  }

  function fmtTokens(input, output) {
    const total = (input || 0) + (output || 0);
    return total ? fmtInt(total) : "—";
  }

  // -- networking and polling ----------------------------------------------------------------

  async function getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      const err = new Error((body && body.error) || resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  function stopPolling() {
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null;
  }

  function schedule(gen, fn) {
    stopPolling();
    pollTimer = setTimeout(function tick() {
      if (gen !== generation) return;
      if (document.hidden) {
        pollTimer = setTimeout(tick, POLL_MS);
        return;
      }
      fn();
    }, POLL_MS);
  }

  function setLive(state, text) {
    liveEl.className = "live live-" + state;
    liveEl.textContent = text;
  }

  // -- routing -------------------------------------------------------------------------------

  function route() {
    generation += 1;
    stopPolling();
    const params = new URLSearchParams(location.search);
    const m = /^\/runs\/([^/]+)\/?$/.exec(location.pathname);
    const sm = /^\/sessions\/([^/]+)\/?$/.exec(location.pathname);
    markNav(location.pathname);
    if (sm) {
      showSession(safeDecode(sm[1]));
    } else if (/^\/sessions\/?$/.test(location.pathname)) {
      showSessions(params);
    } else if (/^\/dashboard\/?$/.test(location.pathname)) {
      showDashboard(params);
    } else if (m) {
      let runId = m[1];
      try {
        runId = decodeURIComponent(runId);
      } catch (_) {
        // keep it as written
      }
      showRun(runId, params.get("span"));
    } else {
      showList(params);
    }
  }

  function safeDecode(text) {
    try {
      return decodeURIComponent(text);
    } catch (_) {
      return text; // keep it as written
    }
  }

  function markNav(path) {
    const section = path.startsWith("/sessions") ? "sessions"
      : path.startsWith("/dashboard") ? "dashboard" : "runs";
    for (const a of document.querySelectorAll(".nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  function navigate(url) {
    history.pushState(null, "", url);
    route();
    window.scrollTo(0, 0);
  }

  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-nav]");
    if (!a || ev.defaultPrevented || ev.button !== 0) return;
    if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", route);

  // -- the runs list -------------------------------------------------------------------------

  function showList(params) {
    const gen = generation;
    document.title = "Runs · tracemux";
    const f = {
      search: params.get("search") || "",
      status: params.get("status") || "",
      user: params.get("user") || "",
      session: params.get("session") || "",
    };
    // keyset pages: the cursor of the page (after or before), and its number (for display)
    const sort = { by: params.get("sort") || "start", order: params.get("order") || "desc" };
    let cursor = params.get("after") ? { after: params.get("after") }
      : params.get("before") ? { before: params.get("before") } : {};
    let page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
    let pageCursors = { next: null, prev: null };
    const pageSize = Math.min(500, Math.max(1, parseInt(params.get("limit") || "", 10) || PAGE_SIZE));
    let lastText = null;
    let seq = 0;
    let debounce = null;

    const search = h("input", {
      type: "search", id: "f-search", placeholder: "Search names, inputs, outputs, logs, errors, ids",
      "aria-label": "Search runs", autocomplete: "off",
    });
    const status = h("select", { id: "f-status", "aria-label": "Status" },
      [["", "Any status"], ["running", "Running"], ["ok", "OK"],
        ["error", "Has errors"], ["partial", "Partial (a span failed)"], ["failed", "Failed"]]
        .map(([v, t]) => h("option", { value: v }, t)));
    const user = h("input", {
      type: "text", id: "f-user", placeholder: "User", "aria-label": "User", autocomplete: "off",
    });
    const session = h("input", {
      type: "text", id: "f-session", placeholder: "Session", "aria-label": "Session",
      autocomplete: "off",
    });
    search.value = f.search;
    status.value = f.status;
    user.value = f.user;
    session.value = f.session;
    const clear = h("button", { type: "button", class: "btn", id: "f-clear" }, "Clear");
    const selected = new Set(); // run ids ticked in the list
    const selInfo = h("span", { class: "muted", id: "sel-info" });
    const exportJsonl = h("a", { class: "btn", id: "export-jsonl", download: "" }, "Export JSONL");
    const exportOtlp = h("a", { class: "btn", id: "export-otlp", download: "" }, "Export OTLP");
    const delSel = h("button", { type: "button", class: "btn btn-danger", id: "delete-selected", disabled: true },
      "Delete selected");
    const actions = h("div", { class: "actions" }, selInfo, exportJsonl, exportOtlp, delSel);
    function updateActions() {
      const ids = [...selected];
      selInfo.textContent = ids.length ? ids.length + " selected · " : "";
      const filters = { search: f.search, status: f.status, user: f.user, session: f.session };
      exportJsonl.setAttribute("href", exportHref("jsonl", ids, filters));
      exportOtlp.setAttribute("href", exportHref("otlp", ids, filters));
      exportJsonl.title = exportOtlp.title = ids.length ? "the selected runs" : "the runs these filters match";
      delSel.disabled = ids.length === 0 || !(info && info.can_delete);
    }
    delSel.addEventListener("click", async () => {
      const ids = [...selected];
      if (!ids.length) return;
      const yes = await confirmDialog("Delete " + ids.length + (ids.length === 1 ? " run?" : " runs?"),
        "The selected runs and all their spans will be deleted from " + ((info && info.db) || "the store") +
        ". This cannot be undone.", "Delete");
      if (!yes || gen !== generation) return;
      try {
        await deleteRuns(ids);
        selected.clear();
        lastText = null;
        updateActions();
        load();
      } catch (err) {
        selInfo.textContent = "Delete failed: " + err.message + " · ";
      }
    });
    loadInfo().then(updateActions, () => {});
    const count = h("span", { class: "count", id: "run-count" });
    const tbody = h("tbody");
    const COLUMNS = ["Name", "Status", "Start", "Duration", "Spans", "Tokens", "Models", "Cost",
      "User", "Session"];
    const headRow = h("tr");
    const table = h("table", { class: "runs", id: "runs", hidden: true },
      h("thead", null, headRow),
      tbody);
    const empty = h("div", { class: "empty", id: "empty", hidden: true });
    const prev = h("button", { type: "button", class: "btn", id: "prev" }, "← Previous");
    const next = h("button", { type: "button", class: "btn", id: "next" }, "Next →");

    function renderHeader() {
      headRow.replaceChildren(...COLUMNS.map(headerCell));
    }
    renderHeader();

    // A column header; the sortable ones (start, duration, spans, tokens) are buttons.
    function headerCell(c) {
      const key = c.toLowerCase();
      const props = {
        scope: "col", class: "col-" + key,
        title: c === "Start" ? "date and time in " + TIME_ZONE : null,
      };
      if (!SORTABLE.has(key)) return h("th", props, c);
      const active = sort.by === key;
      props["aria-sort"] = active ? (sort.order === "asc" ? "ascending" : "descending") : "none";
      return h("th", props, h("button", {
        type: "button", class: "sort-btn" + (active ? " active" : ""), dataset: { sort: key },
        on: {
          click: () => {
            sort.order = active && sort.order === "desc" ? "asc" : "desc";
            sort.by = key;
            cursor = {};
            page = 1;
            syncURL();
            renderHeader();
            lastText = null;
            load();
          },
        },
      }, c, active ? (sort.order === "asc" ? " ▲" : " ▼") : ""));
    }
    const pageInfo = h("span", { class: "page-info", id: "page-info" });

    app.replaceChildren(h("section", { class: "list-view" },
      h("form", { class: "filters", role: "search", on: { submit: (e) => e.preventDefault() } },
        search, status, user, session, clear, count),
      actions,
      h("div", { class: "table-wrap" }, table, empty),
      h("nav", { class: "pager", "aria-label": "Pages" }, prev, pageInfo, next)));
    updateActions();

    function syncURL() {
      const q = new URLSearchParams();
      for (const k of ["search", "status", "user", "session"]) if (f[k]) q.set(k, f[k]);
      if (sort.by !== "start") q.set("sort", sort.by);
      if (sort.order !== "desc") q.set("order", sort.order);
      if (cursor.after) q.set("after", cursor.after);
      if (cursor.before) q.set("before", cursor.before);
      if (page > 1) q.set("page", String(page));
      if (pageSize !== PAGE_SIZE) q.set("limit", String(pageSize));
      const s = q.toString();
      lastListQuery = s ? "?" + s : "";
      history.replaceState(null, "", "/" + lastListQuery);
    }

    function changed(delay) {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        if (gen !== generation) return;
        f.search = search.value.trim();
        f.status = status.value;
        f.user = user.value.trim();
        f.session = session.value.trim();
        updateActions();
        page = 1;
        cursor = {};
        syncURL();
        load();
      }, delay);
    }

    search.addEventListener("input", () => changed(250));
    user.addEventListener("input", () => changed(250));
    session.addEventListener("input", () => changed(250));
    status.addEventListener("change", () => changed(0));
    clear.addEventListener("click", () => {
      search.value = user.value = session.value = status.value = "";
      changed(0);
    });
    prev.addEventListener("click", () => {
      if (pageCursors.prev) {
        page = Math.max(1, page - 1);
        cursor = page === 1 ? {} : { before: pageCursors.prev };
        syncURL();
        load();
      }
    });
    next.addEventListener("click", () => {
      if (pageCursors.next) {
        page += 1;
        cursor = { after: pageCursors.next };
        syncURL();
        load();
      }
    });

    function filterChip(key, value) {
      if (!value) return h("span", { class: "muted" }, "—");
      return h("button", {
        type: "button", class: "chip", title: "Show only this " + key + "'s runs",
        on: {
          click: () => {
            (key === "user" ? user : session).value = value;
            changed(0);
          },
        },
      }, value);
    }

    function runRow(r) {
      const href = runHref(r.run_id);
      const errTitle = r.error ? (r.error.type || "Error") + ": " + (r.error.message || "") : null;
      return h("tr", {
        class: "run-row", dataset: { runId: r.run_id, status: r.status },
        on: {
          click: (ev) => {
            if (ev.target.closest("a, button, input")) return;
            navigate(href);
          },
        },
      },
      h("td", { class: "c-name" },
        h("input", {
          type: "checkbox", class: "select", "aria-label": "Select run " + (r.name || r.run_id),
          checked: selected.has(r.run_id),
          on: {
            change: (ev) => {
              if (ev.target.checked) selected.add(r.run_id);
              else selected.delete(r.run_id);
              updateActions();
            },
          },
        }),
        h("a", { href: href, "data-nav": true, class: "run-link" }, r.name || "(unnamed)"),
        h("span", { class: "run-id", title: r.run_id }, r.run_id.slice(0, 8))),
      h("td", null, statusPill(r.status, errTitle)),
      h("td", { class: "c-time", title: fullTime(r.start_ns) + " " + TIME_ZONE }, dateTime(r.start_ns)),
      h("td", { class: "num" },
        r.status === "running" ? h("span", { class: "muted" }, "running…") : fmtDur(r.duration_ms)),
      h("td", { class: "num" }, fmtInt(r.span_count),
        r.error_count ? h("span", { class: "err-count", title: r.error_count + " failed" },
          " ✕" + r.error_count) : null),
      h("td", {
        class: "num",
        title: "input " + fmtInt(r.input_tokens) + " · output " + fmtInt(r.output_tokens),
      }, fmtTokens(r.input_tokens, r.output_tokens)),
      h("td", { class: "c-models" }, (r.models || []).join(", ") || h("span", { class: "muted" }, "—")),
      h("td", {
        class: "num c-cost",
        title: r.cost && r.cost.unpriced ? r.cost.unpriced + " model(s) without a known price" : null,
      }, fmtUsd(r.cost)),
      h("td", { class: "c-user" }, filterChip("user", r.user_id)),
      h("td", { class: "c-session" }, filterChip("session", r.session_id)));
    }

    function render(data) {
      const total = data.total;
      const from = (page - 1) * pageSize;
      const to = from + data.runs.length;
      pageCursors = { next: data.next, prev: data.prev };
      tbody.replaceChildren(...data.runs.map(runRow));
      count.textContent = total === 1 ? "1 run" : fmtInt(total) + " runs";
      pageInfo.textContent = data.runs.length
        ? fmtInt(from + 1) + "–" + fmtInt(to) + " of " + fmtInt(total) : "";
      prev.disabled = !data.prev;
      next.disabled = !data.next;
      table.hidden = data.runs.length === 0;
      empty.hidden = data.runs.length !== 0;
      const filtered = f.search || f.status || f.user || f.session;
      empty.replaceChildren(filtered
        ? h("p", null, "No runs match these filters.")
        : h("p", null, "No runs recorded yet. Record some (e.g. ",
          h("code", null, "tracemux demo"), "); they appear here as they start."));
    }

    async function load() {
      if (gen !== generation) return;
      stopPolling();
      seq += 1;
      const mine = seq;
      const q = new URLSearchParams({ limit: String(pageSize), sort: sort.by, order: sort.order });
      for (const k of ["search", "status", "user", "session"]) if (f[k]) q.set(k, f[k]);
      if (cursor.after) q.set("after", cursor.after);
      if (cursor.before) q.set("before", cursor.before);
      try {
        const data = await getJSON("/api/runs?" + q.toString());
        if (gen !== generation || mine !== seq) return;
        if (data.runs.length === 0 && data.total > 0 && page > 1) {
          page = 1; // the page's runs are gone (pruned or deleted): back to the first
          cursor = {};
          syncURL();
          load();
          return;
        }
        const text = JSON.stringify(data);
        if (text !== lastText) {
          lastText = text;
          render(data);
        }
        setLive("on", "live · updated " + clock(new Date()));
      } catch (err) {
        if (gen !== generation || mine !== seq) return;
        if (err.status === 400) {
          empty.replaceChildren(h("p", null, "Bad filter: " + err.message));
          empty.hidden = false;
          table.hidden = true;
        }
        setLive("off", "cannot reach the server, retrying…");
      }
      if (gen === generation && mine === seq) schedule(gen, load);
    }

    syncURL();
    load();
  }

  // -- JSON viewer ---------------------------------------------------------------------------

  function foldedString(s) {
    if (s.length <= FOLD_CHARS) return h("span", { class: "j-string" }, s);
    const text = h("span", { class: "j-string" }, s.slice(0, FOLD_CHARS));
    const more = "show " + fmtInt(s.length - FOLD_CHARS) + " more characters";
    const btn = h("button", { type: "button", class: "fold-btn" }, "… " + more);
    btn.addEventListener("click", () => {
      const open = text.classList.toggle("unfolded");
      text.textContent = open ? s : s.slice(0, FOLD_CHARS);
      btn.textContent = open ? "show less" : "… " + more;
    });
    return h("span", { class: "j-fold" }, text, btn);
  }

  function jsonLeaf(value) {
    if (value === null || value === undefined) return h("span", { class: "j-null" }, "null");
    if (typeof value === "string") return foldedString(value);
    if (typeof value === "number") return h("span", { class: "j-number" }, String(value));
    if (typeof value === "boolean") return h("span", { class: "j-boolean" }, String(value));
    return h("span", null, String(value));
  }

  // A value as a tree: objects and arrays are <details> (collapsible), strings are folded.
  function jsonView(value, depth, label) {
    const keyEl = label === undefined ? null
      : h("span", { class: typeof label === "number" ? "j-index" : "j-key" }, String(label));
    const isObj = value !== null && typeof value === "object";
    if (!isObj) {
      return h("div", { class: "j-entry" }, keyEl, keyEl ? h("span", { class: "j-colon" }, ": ") : null,
        jsonLeaf(value));
    }
    const isArr = Array.isArray(value);
    const keys = isArr ? value.map((_, i) => i) : Object.keys(value);
    if (keys.length === 0) {
      return h("div", { class: "j-entry" }, keyEl, keyEl ? h("span", { class: "j-colon" }, ": ") : null,
        h("span", { class: "j-empty" }, isArr ? "[ ]" : "{ }"));
    }
    const n = keys.length;
    const summary = isArr ? "[ " + n + (n === 1 ? " item ]" : " items ]")
      : "{ " + n + (n === 1 ? " key }" : " keys }");
    const body = h("div", { class: "j-body" });
    const node = h("details", { class: "j-node", open: depth < OPEN_DEPTH },
      h("summary", { class: "j-summary" }, keyEl, keyEl ? h("span", { class: "j-colon" }, ": ") : null,
        h("span", { class: "j-count" }, summary)),
      body);
    const addEntries = (from, to) => {
      for (const k of keys.slice(from, to)) body.appendChild(jsonView(value[k], depth + 1, k));
    };
    addEntries(0, MAX_ITEMS);
    if (n > MAX_ITEMS) {
      const btn = h("button", { type: "button", class: "fold-btn" },
        "show " + fmtInt(n - MAX_ITEMS) + " more");
      btn.addEventListener("click", () => {
        btn.remove();
        addEntries(MAX_ITEMS, n);
      });
      body.appendChild(btn);
    }
    return node;
  }

  function jsonBlock(value) {
    if (value === null || value === undefined) return h("p", { class: "muted" }, "none");
    return h("div", { class: "json" }, jsonView(value, 0));
  }

  function copyButton(value) {
    const btn = h("button", { type: "button", class: "copy-btn", title: "Copy as JSON" }, "copy");
    btn.addEventListener("click", () => {
      const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(() => {
          btn.textContent = "copied";
          setTimeout(() => { btn.textContent = "copy"; }, 1200);
        }, () => { btn.textContent = "copy failed"; });
      }
    });
    return btn;
  }

  // -- a run: header, waterfall, detail panel ------------------------------------------------

  function showRun(runId, spanParam) {
    const gen = generation;
    let run = null;
    let spans = [];
    let byId = new Map();
    let selected = spanParam || null;
    let lastText = null;
    let detailKey = null;
    const collapsed = new Set();

    const head = h("div", { class: "run-head", id: "run-head" }, h("p", { class: "muted" }, "Loading…"));
    const wf = h("div", { class: "waterfall", id: "waterfall", tabindex: "0", "aria-label": "Spans" });
    const detail = h("aside", { class: "detail", id: "detail", "aria-label": "Span details" });
    app.replaceChildren(h("section", { class: "run-view" },
      h("a", { href: "/" + lastListQuery, "data-nav": true, class: "back" }, "← All runs"),
      head,
      h("div", { class: "run-body" }, h("div", { class: "wf-wrap" }, wf), detail)));
    document.title = "Run · tracemux";

    wf.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
      const rows = Array.from(wf.querySelectorAll(".wf-row[data-span-id]")).filter((r) => !r.hidden);
      if (!rows.length) return;
      ev.preventDefault();
      let i = rows.findIndex((r) => r.dataset.spanId === selected);
      i = ev.key === "ArrowDown" ? Math.min(rows.length - 1, i + 1) : Math.max(0, i - 1);
      select(rows[i].dataset.spanId, true);
      rows[i].scrollIntoView({ block: "nearest" });
    });

    function meta(label, ...value) {
      return h("div", { class: "meta-item" }, h("span", { class: "meta-label" }, label), " ", ...value);
    }

    function renderHead() {
      document.title = (run.name || "run") + " · tracemux";
      const items = [
        meta("start", h("span", { title: String(run.start_ns) }, fullTime(run.start_ns))),
        meta("duration", run.status === "running" ? "running…" : fmtDur(run.duration_ms)),
        meta("spans", fmtInt(run.span_count),
          run.error_count ? h("span", { class: "err-count" }, " (" + run.error_count + " failed)") : null),
        meta("tokens", fmtInt(run.input_tokens) + " in · " + fmtInt(run.output_tokens) + " out"),
        meta("cost", h("span", { id: "run-cost" }, fmtUsd(run.cost))),
      ];
      if (run.user_id) {
        items.push(meta("user", h("a", { href: listHref({ user: run.user_id }), "data-nav": true }, run.user_id)));
      }
      if (run.session_id) {
        items.push(meta("session",
          h("a", { href: sessionHref(run.session_id), "data-nav": true, id: "run-session" },
            run.session_id)));
      }
      if (run.project) items.push(meta("project", run.project));
      if (run.tags && run.tags.length) {
        items.push(meta("tags", ...run.tags.map((t) => h("span", { class: "tag" }, t))));
      }
      items.push(meta("run id", h("code", { class: "run-id-full" }, run.run_id)));
      const del = info && info.can_delete
        ? h("button", { type: "button", class: "btn btn-danger btn-small", id: "delete-run",
          on: { click: () => confirmDelete() } }, "Delete run") : null;
      const exp = h("a", { class: "btn btn-small", id: "export-run", download: "",
        href: exportHref("jsonl", [run.run_id]) }, "Export");
      head.replaceChildren(
        h("div", { class: "run-title" }, h("h1", { id: "run-name" }, run.name || "(unnamed)"),
          statusPill(run.status), h("span", { class: "run-actions" }, exp, del)),
        h("div", { class: "run-meta" }, items));
    }

    async function confirmDelete() {
      const yes = await confirmDialog("Delete this run?", "“" + (run.name || run.run_id) + "” and its " +
        fmtInt(run.span_count) + " spans will be deleted from the store. This cannot be undone.",
      "Delete run");
      if (!yes || gen !== generation) return;
      try {
        await deleteRuns([run.run_id]);
        navigate("/" + lastListQuery);
      } catch (err) {
        setLive("off", "delete failed: " + err.message);
      }
    }

    // The spans in tree order (depth first, children by start time); a span whose parent
    // is not (yet) in the store is shown at the top level.
    function treeOrder() {
      const kids = new Map();
      const roots = [];
      for (const s of spans) {
        if (s.parent_id && byId.has(s.parent_id) && s.parent_id !== s.span_id) {
          if (!kids.has(s.parent_id)) kids.set(s.parent_id, []);
          kids.get(s.parent_id).push(s);
        } else {
          roots.push(s);
        }
      }
      const out = [];
      const seen = new Set();
      const stack = roots.slice().reverse().map((s) => [s, 0, false]);
      while (stack.length) {
        const [s, depth, hidden] = stack.pop();
        if (seen.has(s.span_id)) continue;
        seen.add(s.span_id);
        const children = kids.get(s.span_id) || [];
        out.push({ s, depth, hidden, hasKids: children.length > 0 });
        const hide = hidden || collapsed.has(s.span_id);
        for (let i = children.length - 1; i >= 0; i--) stack.push([children[i], depth + 1, hide]);
      }
      return out;
    }

    function renderWaterfall() {
      if (!spans.length) {
        wf.replaceChildren(h("p", { class: "muted pad" },
          run.status === "running" ? "No spans recorded yet: they appear as they end." : "This run has no spans."));
        return;
      }
      let total = run.duration_ms || 0;
      for (const s of spans) total = Math.max(total, s.offset_ms + s.duration_ms);
      if (!(total > 0)) total = 1;
      const pct = (ms) => Math.min(100, Math.max(0, (ms / total) * 100));
      const ticks = [0, 0.25, 0.5, 0.75, 1].map((t) =>
        h("span", {
          class: "tick " + (t === 0 ? "tick-start" : t === 1 ? "tick-end" : "tick-mid"),
          style: { left: t * 100 + "%" },
        },
          t === 0 ? "0" : fmtDur(total * t)));
      const rows = [h("div", { class: "wf-row wf-axis", "aria-hidden": "true" },
        h("div", { class: "wf-label" }, "Span"), h("div", { class: "wf-track" }, ticks),
        h("div", { class: "wf-dur" }, "Duration"))];
      for (const { s, depth, hidden, hasKids } of treeOrder()) {
        const left = pct(s.offset_ms);
        const width = Math.min(100 - left, Math.max(pct(s.duration_ms), 0.3));
        const isErr = s.status === "error";
        const row = h("div", {
          class: "wf-row" + (isErr ? " is-error" : "") + (s.span_id === selected ? " selected" : ""),
          role: "button", "aria-selected": s.span_id === selected ? "true" : "false",
          title: s.name + " · " + s.kind + " · " + fmtDur(s.duration_ms),
          dataset: {
            spanId: s.span_id, parentId: s.parent_id, depth: depth, kind: s.kind, status: s.status,
          },
          on: { click: () => select(s.span_id, true) },
        },
        h("div", { class: "wf-label", style: { paddingLeft: 6 + depth * 16 + "px" } },
          hasKids
            ? h("button", {
              type: "button", class: "twisty", "aria-label": collapsed.has(s.span_id) ? "Expand" : "Collapse",
              on: {
                click: (ev) => {
                  ev.stopPropagation();
                  if (collapsed.has(s.span_id)) collapsed.delete(s.span_id);
                  else collapsed.add(s.span_id);
                  renderWaterfall();
                },
              },
            }, collapsed.has(s.span_id) ? "▸" : "▾")
            : h("span", { class: "twisty" }),
          h("span", { class: "kind-badge " + kindClass(s.kind) }, s.kind),
          h("span", { class: "wf-name" }, s.name),
          isErr ? h("span", { class: "err-mark", title: "failed" }, "✕") : null),
        h("div", { class: "wf-track" },
          h("div", {
            class: "wf-bar " + kindClass(s.kind) + (isErr ? " is-error" : ""),
            style: { left: left + "%", width: width + "%" },
          })),
        h("div", { class: "wf-dur" }, fmtDur(s.duration_ms)));
        row.hidden = hidden;
        rows.push(row);
      }
      wf.replaceChildren(...rows);
    }

    function select(spanId, updateUrl) {
      if (!byId.has(spanId)) return;
      selected = spanId;
      for (const row of wf.querySelectorAll(".wf-row[data-span-id]")) {
        const on = row.dataset.spanId === spanId;
        row.classList.toggle("selected", on);
        row.setAttribute("aria-selected", on ? "true" : "false");
      }
      if (updateUrl) history.replaceState(null, "", runHref(run.run_id, spanId));
      renderDetail(byId.get(spanId));
    }

    function section(name, title, body, extra) {
      return h("section", { class: "d-section d-" + name, dataset: { section: name } },
        h("h3", null, title, extra || null), body);
    }

    let llmRaw = false; // an LLM span shows its chat view, or its raw JSON

    function renderDetail(s) {
      const key = JSON.stringify(s);
      if (key === detailKey) return;
      detailKey = key;
      const facts = [
        ["start", "+" + fmtDur(s.offset_ms) + " · " + fullTime(s.start_ns)],
        ["duration", fmtDur(s.duration_ms)],
      ];
      if (s.model) facts.push(["model", s.model], ["cost", fmtUsd(s.cost_usd)]);
      if (s.usage) {
        facts.push(["tokens", fmtInt(s.usage.input_tokens) + " in · " +
          fmtInt(s.usage.output_tokens) + " out · " + fmtInt(s.usage.total_tokens) + " total"]);
      }
      facts.push(["span id", s.span_id]);
      if (s.parent_id) facts.push(["parent", s.parent_id]);
      const parts = [
        h("div", { class: "d-head" },
          h("span", { class: "kind-badge " + kindClass(s.kind) }, s.kind),
          h("h2", { class: "d-title", id: "d-title" }, s.name),
          statusPill(s.status)),
        h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
      ];
      if (s.error) {
        parts.push(section("error", "Error", h("div", { class: "error-box", id: "d-error" },
          h("div", { class: "err-title" }, h("strong", null, s.error.type || "Error"),
            s.error.message ? ": " + s.error.message : ""),
          s.error.traceback
            ? h("details", { class: "traceback", open: true }, h("summary", null, "Traceback"),
              h("pre", null, s.error.traceback))
            : null)));
      }
      const chat = s.kind === "llm" ? chatView(s.inputs, s.outputs) : null;
      const raw = [
        section("inputs", "Inputs", jsonBlock(s.inputs), s.inputs == null ? null : copyButton(s.inputs)),
        section("outputs", "Outputs", jsonBlock(s.outputs), s.outputs == null ? null : copyButton(s.outputs)),
      ];
      if (chat) {
        // an LLM call reads as a conversation; its raw JSON is one click away
        const toggle = h("button", { type: "button", class: "btn btn-small", id: "raw-toggle" });
        const chatSection = section("chat", "Conversation", chat);
        const show = () => {
          chatSection.hidden = llmRaw;
          for (const r of raw) r.hidden = !llmRaw;
          toggle.textContent = llmRaw ? "Chat view" : "Raw JSON";
        };
        toggle.addEventListener("click", () => {
          llmRaw = !llmRaw;
          show();
        });
        parts.push(h("div", { class: "view-toggle" }, toggle), chatSection);
        show();
      }
      parts.push(...raw);
      if (s.metadata != null) {
        parts.push(section("metadata", "Metadata", jsonBlock(s.metadata), copyButton(s.metadata)));
      }
      if (s.usage) {
        parts.push(section("usage", "Usage", h("table", { class: "usage" },
          s.model ? h("tr", null, h("th", null, "model"), h("td", null, s.model)) : null,
          Object.entries(s.usage).map(([k, v]) => h("tr", null, h("th", null, k),
            h("td", { class: "num" }, typeof v === "number" ? fmtInt(v) : String(v)))))));
      }
      if (s.logs && s.logs.length) {
        parts.push(section("logs", "Logs (" + s.logs.length + ")", h("ol", { class: "logs" },
          s.logs.map((l) => h("li", { class: "log log-" + String(l.level).replace(/[^a-z]/g, "") },
            h("span", { class: "log-time" }, "+" + fmtDur((l.time_ns - s.start_ns) / 1e6)),
            h("span", { class: "log-level" }, l.level),
            h("span", { class: "log-msg" }, l.message),
            l.fields ? h("div", { class: "log-fields json" }, jsonView(l.fields, 1)) : null)))));
      }
      detail.replaceChildren(...parts);
    }

    function render() {
      renderHead();
      byId = new Map(spans.map((s) => [s.span_id, s]));
      if (!selected || !byId.has(selected)) {
        const root = spans.find((s) => !s.parent_id) || spans[0];
        selected = root ? root.span_id : null;
      }
      renderWaterfall();
      if (selected) renderDetail(byId.get(selected));
      else {
        detailKey = null;
        detail.replaceChildren(h("p", { class: "muted pad" }, "Select a span to see its details."));
      }
    }

    async function load() {
      if (gen !== generation) return;
      const id = encodeURIComponent(runId);
      try {
        const [r, s] = await Promise.all([getJSON("/api/runs/" + id), getJSON("/api/runs/" + id + "/spans"),
          loadInfo().catch(() => null)]);
        if (gen !== generation) return;
        const text = JSON.stringify([r, s]);
        if (text !== lastText) {
          lastText = text;
          run = r;
          spans = s.spans;
          render();
        }
        if (run.status === "running") {
          setLive("on", "live · updated " + clock(new Date()));
          schedule(gen, load);
        } else {
          setLive("idle", "run finished");
        }
      } catch (err) {
        if (gen !== generation) return;
        if (err.status === 404) {
          document.title = "Run not found · tracemux";
          head.replaceChildren(h("h1", null, "Run not found"),
            h("p", { class: "muted" }, "No run with id ", h("code", null, runId), " in this store."));
          wf.replaceChildren();
          detail.replaceChildren();
          setLive("idle", "");
          return;
        }
        setLive("off", "cannot reach the server, retrying…");
        schedule(gen, load);
      }
    }

    load();
  }

  // -- dashboard ------------------------------------------------------------------------------

  // the SVG namespace, from the (empty) <svg> of index.html: no URL in this file
  const SVG_NS = document.getElementById("svg-ns").namespaceURI;

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function fmtMs(ms) {
    return ms === null || ms === undefined ? "—" : fmtDur(ms);
  }

  function pct(x) {
    return x === null || x === undefined ? "—" : (x * 100).toFixed(1).replace(/\.0$/, "") + "%";
  }

  function stepLabel(t, stepNs) {
    const from = dateTime(t).slice(0, 16);
    const to = dateTime(t + stepNs).slice(0, 16);
    return from + " – " + (to.slice(0, 10) === from.slice(0, 10) ? to.slice(11) : to);
  }

  const MODEL_COLORS = ["#5c7cfa", "#f08c00", "#0ca678", "#e64980", "#7048e8", "#1098ad", "#74b816", "#c2255c"];

  // Runs per step (bars, failed part in red) with the error rate as a line; every bar
  // has a tooltip (<title>) with its numbers.
  function runsChart(data) {
    const W = 900, H = 200, PAD = 34;
    const runs = data.runs;
    const max = Math.max(1, ...runs.map((r) => r.runs));
    const bw = (W - PAD * 2) / runs.length;
    const y = (v) => H - PAD - (v / max) * (H - PAD * 2);
    const bars = runs.map((r, i) => {
      const x = PAD + i * bw;
      const rate = r.runs ? r.with_errors / r.runs : null;
      return svg("g", { class: "bar", "data-t": r.t, "data-runs": r.runs, "data-errors": r.with_errors },
        svg("title", null, stepLabel(r.t, data.step_ns) + " · " + fmtInt(r.runs) + " runs · " +
          fmtInt(r.with_errors) + " with errors" + (rate === null ? "" : " (" + pct(rate) + ")")),
        svg("rect", { class: "bar-runs", x: x + 1, y: y(r.runs), width: Math.max(1, bw - 2), height: H - PAD - y(r.runs) }),
        svg("rect", { class: "bar-errors", x: x + 1, y: y(r.with_errors), width: Math.max(1, bw - 2), height: H - PAD - y(r.with_errors) }),
        // a transparent full-height target so that the tooltip shows over empty steps too
        svg("rect", { class: "bar-hit", x: x, y: PAD, width: bw, height: H - PAD * 2 }));
    });
    const points = runs.map((r, i) => r.runs
      ? (PAD + (i + 0.5) * bw).toFixed(1) + "," + (H - PAD - (r.with_errors / r.runs) * (H - PAD * 2)).toFixed(1) : null)
      .filter(Boolean);
    return svg("svg", { class: "chart", id: "chart-runs", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "Runs and error rate over time" },
    svg("line", { class: "axis", x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD }),
    svg("text", { class: "axis-label", x: PAD - 6, y: PAD + 4, "text-anchor": "end" }, fmtInt(max)),
    svg("text", { class: "axis-label", x: PAD - 6, y: H - PAD, "text-anchor": "end" }, "0"),
    svg("text", { class: "axis-label err", x: W - PAD + 6, y: PAD + 4 }, "100%"),
    svg("text", { class: "axis-label", x: PAD, y: H - 10 }, dateTime(data.since_ns).slice(0, 16)),
    svg("text", { class: "axis-label", x: W - PAD, y: H - 10, "text-anchor": "end" }, dateTime(data.until_ns).slice(0, 16)),
    bars,
    points.length > 1 ? svg("polyline", { class: "err-line", points: points.join(" ") }) : null);
  }

  // Tokens per step, stacked by model; tooltips give each model's tokens and cost.
  function modelsChart(data) {
    const W = 900, H = 180, PAD = 34;
    const steps = data.runs.length;
    const colors = new Map(data.models.map((m, i) => [m.model, MODEL_COLORS[i % MODEL_COLORS.length]]));
    const perStep = new Map();
    for (const m of data.models_over_time) {
      const i = Math.round((m.t - data.since_ns) / data.step_ns);
      if (!perStep.has(i)) perStep.set(i, []);
      perStep.get(i).push(m);
    }
    const max = Math.max(1, ...[...perStep.values()].map((ms) => ms.reduce((n, m) => n + m.tokens, 0)));
    const bw = (W - PAD * 2) / steps;
    const groups = [];
    for (const [i, ms] of perStep) {
      let base = H - PAD;
      for (const m of ms) {
        const h = (m.tokens / max) * (H - PAD * 2);
        base -= h;
        groups.push(svg("rect", {
          class: "model-bar", x: PAD + i * bw + 1, y: base, width: Math.max(1, bw - 2), height: h,
          fill: colors.get(m.model) || "#888", "data-model": m.model, "data-tokens": m.tokens,
        }, svg("title", null, stepLabel(m.t, data.step_ns) + " · " + m.model + " · " +
          fmtInt(m.tokens) + " tokens · " + fmtUsd(m.cost_usd))));
      }
    }
    const legend = h("div", { class: "legend" }, data.models.map((m) =>
      h("span", { class: "legend-item" }, svg("svg", { width: 10, height: 10 },
        svg("rect", { width: 10, height: 10, fill: colors.get(m.model) })), " " + m.model)));
    return [svg("svg", { class: "chart", id: "chart-models", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "Tokens by model over time" },
    svg("line", { class: "axis", x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD }),
    svg("text", { class: "axis-label", x: PAD - 6, y: PAD + 4, "text-anchor": "end" }, fmtInt(max)),
    groups), legend];
  }

  function latencyTable(id, rows, withKind, exampleKey, exampleLabel) {
    const max = Math.max(1e-9, ...rows.map((r) => r.p95 || 0));
    return h("table", { class: "runs dash-table", id: id },
      h("thead", null, h("tr", null, ["Name", withKind ? "Kind" : null, "Calls", "p50", "p95", "p99",
        "Failed", "Example"].filter(Boolean).map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, rows.map((r) => h("tr", { class: "dash-row", dataset: { name: r.name } },
        h("td", { class: "c-name" }, r.name,
          svg("svg", { class: "p95-bar", viewBox: "0 0 100 4", preserveAspectRatio: "none" },
            svg("rect", { width: Math.max(1, ((r.p95 || 0) / max) * 100).toFixed(1), height: 4 }))),
        withKind ? h("td", null, h("span", { class: "kind-badge " + kindClass(r.kind) }, r.kind)) : null,
        h("td", { class: "num c-n" }, fmtInt(r.n)),
        h("td", { class: "num c-p50" }, fmtMs(r.p50)),
        h("td", { class: "num c-p95" }, fmtMs(r.p95)),
        h("td", { class: "num c-p99" }, fmtMs(r.p99)),
        h("td", { class: "num c-failed" }, r.errors ? h("span", { class: "err-count" }, fmtInt(r.errors) + " (" + pct(r.error_rate) + ")") : "—"),
        h("td", null, r[exampleKey] ? h("a", { href: runHref(r[exampleKey]), "data-nav": true, class: "example" }, exampleLabel) : "—")))));
  }

  function showDashboard(params) {
    const gen = generation;
    document.title = "Dashboard · tracemux";
    const q = {
      range: params.get("range") || "7d",
      flow: params.get("flow") || "",
      project: params.get("project") || "",
    };
    const rangeSel = h("select", { id: "d-range", "aria-label": "Time range" },
      [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"]]
        .map(([v, t]) => h("option", { value: v }, t)));
    rangeSel.value = q.range;
    const flowSel = h("select", { id: "d-flow", "aria-label": "Flow" }, h("option", { value: "" }, "All flows"));
    const projectIn = h("input", { type: "text", id: "d-project", placeholder: "Project", "aria-label": "Project", autocomplete: "off" });
    projectIn.value = q.project;
    const body = h("div", { class: "dash-body", id: "dash-body" }, h("p", { class: "muted" }, "Loading…"));
    app.replaceChildren(h("section", { class: "dash-view" },
      h("div", { class: "filters" }, h("h1", { class: "page-title" }, "Dashboard"), rangeSel, flowSel, projectIn),
      body));
    let debounce = null;
    function changed() {
      q.range = rangeSel.value;
      q.flow = flowSel.value;
      q.project = projectIn.value.trim();
      const u = new URLSearchParams();
      for (const [k, v] of Object.entries(q)) if (v && !(k === "range" && v === "7d")) u.set(k, v);
      history.replaceState(null, "", "/dashboard" + (u.toString() ? "?" + u.toString() : ""));
      load();
    }
    rangeSel.addEventListener("change", changed);
    flowSel.addEventListener("change", changed);
    projectIn.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(changed, 300);
    });

    function card(label, value, id, sub) {
      return h("div", { class: "card" }, h("div", { class: "card-label" }, label),
        h("div", { class: "card-value", id: id }, value), sub ? h("div", { class: "card-sub" }, sub) : null);
    }

    function render(data) {
      const known = new Set([...flowSel.options].map((o) => o.value));
      for (const f of data.flows_available) {
        if (!known.has(f)) flowSel.appendChild(h("option", { value: f }, f));
      }
      flowSel.value = q.flow;
      const t = data.totals;
      body.replaceChildren(
        h("div", { class: "cards" },
          card("Runs", fmtInt(t.runs), "t-runs"),
          card("With errors", fmtInt(t.with_errors), "t-errors", pct(t.error_rate) + " of runs"),
          card("Tokens", fmtInt(t.tokens), "t-tokens"),
          card("Cost", fmtUsd(t.cost), "t-cost", t.cost.unpriced ? "some models have no known price" : null)),
        h("section", { class: "panel" }, h("h2", null, "Runs and error rate"), runsChart(data)),
        h("section", { class: "panel" }, h("h2", null, "Tokens and cost by model"), modelsChart(data),
          h("table", { class: "runs dash-table", id: "models-table" },
            h("thead", null, h("tr", null, ["Model", "Calls", "Input tokens", "Output tokens", "Cost"]
              .map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", null, data.models.map((m) => h("tr", { class: "model-row", dataset: { model: m.model } },
              h("td", null, m.model), h("td", { class: "num" }, fmtInt(m.calls)),
              h("td", { class: "num" }, fmtInt(m.input_tokens)), h("td", { class: "num" }, fmtInt(m.output_tokens)),
              h("td", { class: "num c-cost" }, fmtUsd(m.cost_usd))))))),
        h("section", { class: "panel" }, h("h2", null, "Latency by flow"),
          latencyTable("flows-table", data.flows, false, "slowest_run", "slowest run")),
        h("section", { class: "panel" }, h("h2", null, "Slowest components (by p95)"),
          latencyTable("slowest-table", data.slowest, true, "slowest_run", "slowest run")),
        h("section", { class: "panel" }, h("h2", null, "Most failing components"),
          data.failing.length ? latencyTable("failing-table", data.failing, true, "failed_run", "a failed run")
            : h("p", { class: "muted" }, "No component failed in this range.")));
    }

    let lastText = null;
    async function load() {
      if (gen !== generation) return;
      const u = new URLSearchParams({ range: q.range });
      if (q.flow) u.set("flow", q.flow);
      if (q.project) u.set("project", q.project);
      try {
        const data = await getJSON("/api/dashboard?" + u.toString());
        if (gen !== generation) return;
        const text = JSON.stringify(data);
        if (text !== lastText) {
          lastText = text;
          render(data);
        }
        setLive("on", "live · updated " + clock(new Date()));
      } catch (err) {
        if (gen !== generation) return;
        setLive("off", "cannot reach the server, retrying…");
      }
      schedule(gen, load);
    }
    load();
  }

  // -- export, delete, confirmation ------------------------------------------------------------

  async function loadInfo() {
    if (!info) info = await getJSON("/api/info");
    return info;
  }

  // A confirmation in the page (not window.confirm): resolves true only on the explicit
  // button; Escape, Cancel or a click outside resolve false.
  function confirmDialog(title, text, okText) {
    return new Promise((resolve) => {
      const prevFocus = document.activeElement;
      const ok = h("button", { type: "button", class: "btn btn-danger", id: "confirm-ok" }, okText);
      const cancel = h("button", { type: "button", class: "btn", id: "confirm-cancel" }, "Cancel");
      const box = h("div", {
        class: "modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "confirm-title",
        id: "confirm",
      }, h("h2", { id: "confirm-title" }, title), h("p", { id: "confirm-text" }, text),
      h("div", { class: "modal-actions" }, cancel, ok));
      const overlay = h("div", { class: "overlay" }, box);
      function done(answer) {
        overlay.remove();
        document.removeEventListener("keydown", onKey, true);
        if (prevFocus && prevFocus.focus) prevFocus.focus();
        resolve(answer);
      }
      function onKey(ev) {
        if (ev.key === "Escape") {
          ev.preventDefault();
          done(false);
        }
      }
      ok.addEventListener("click", () => done(true));
      cancel.addEventListener("click", () => done(false));
      overlay.addEventListener("click", (ev) => { if (ev.target === overlay) done(false); });
      document.addEventListener("keydown", onKey, true);
      document.body.appendChild(overlay);
      cancel.focus();
    });
  }

  async function deleteRuns(runIds) {
    const i = await loadInfo();
    const resp = await fetch("/api/runs/delete", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Tracemux-Token": i.token || "" },
      body: JSON.stringify({ run_ids: runIds }),
      cache: "no-store",
    });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error((body && body.error) || resp.statusText);
    return body.deleted;
  }

  function exportHref(format, runIds, filters) {
    const q = new URLSearchParams({ format: format });
    if (runIds && runIds.length) for (const id of runIds) q.append("run", id);
    else for (const [k, v] of Object.entries(filters || {})) if (v) q.set(k, v);
    return "/api/export?" + q.toString();
  }

  // -- sessions ------------------------------------------------------------------------------

  function sessionHref(sessionId) {
    return "/sessions/" + encodeURIComponent(sessionId);
  }

  function showSessions(params) {
    const gen = generation;
    document.title = "Sessions · tracemux";
    const user = params.get("user") || "";
    const tbody = h("tbody");
    const count = h("span", { class: "count", id: "session-count" });
    const empty = h("div", { class: "empty", id: "sessions-empty", hidden: true });
    const table = h("table", { class: "runs sessions", id: "sessions" },
      h("thead", null, h("tr", null, ["Session", "User", "Runs", "First", "Last", "Tokens", "Cost", "Errors"]
        .map((c) => h("th", { scope: "col", class: "col-" + c.toLowerCase() }, c)))),
      tbody);
    app.replaceChildren(h("section", { class: "list-view" },
      h("div", { class: "filters" }, h("h1", { class: "page-title" }, "Sessions"),
        user ? h("span", { class: "chip" }, "user: " + user) : null, count),
      h("div", { class: "table-wrap" }, table, empty)));

    function row(s) {
      const href = sessionHref(s.session_id);
      return h("tr", { class: "session-row", dataset: { sessionId: s.session_id } },
        h("td", null, h("a", { href: href, "data-nav": true, class: "session-link" }, s.session_id)),
        h("td", { class: "c-user" }, s.user_id || h("span", { class: "muted" }, "—")),
        h("td", { class: "num c-runs" }, fmtInt(s.runs)),
        h("td", { class: "c-time" }, dateTime(s.first_ns)),
        h("td", { class: "c-time" }, dateTime(s.last_ns)),
        h("td", { class: "num" }, fmtTokens(s.input_tokens, s.output_tokens)),
        h("td", { class: "num c-cost" }, fmtUsd(s.cost)),
        h("td", { class: "num c-errors" }, s.runs_with_errors
          ? h("span", { class: "err-count" }, fmtInt(s.runs_with_errors) + " of " + fmtInt(s.runs))
          : h("span", { class: "muted" }, "—")));
    }

    async function load() {
      if (gen !== generation) return;
      const q = new URLSearchParams({ limit: "100" });
      if (user) q.set("user", user);
      try {
        const data = await getJSON("/api/sessions?" + q.toString());
        if (gen !== generation) return;
        tbody.replaceChildren(...data.sessions.map(row));
        count.textContent = fmtInt(data.total) + (data.total === 1 ? " session" : " sessions");
        table.hidden = data.sessions.length === 0;
        empty.hidden = data.sessions.length !== 0;
        empty.replaceChildren(h("p", null, "No sessions yet: runs recorded with a session_id are grouped here."));
        setLive("on", "live · updated " + clock(new Date()));
      } catch (err) {
        if (gen !== generation) return;
        setLive("off", "cannot reach the server, retrying…");
      }
      schedule(gen, load);
    }
    load();
  }

  // The text a user would read in a run's inputs or outputs: a string, a known field of
  // an object (question, input, answer, content...), or the last message of a list.
  const TEXT_KEYS = ["content", "text", "message", "question", "input", "input_value", "query",
    "prompt", "answer", "output", "output_value", "result", "response"];

  function messageText(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "string") return value;
    if (Array.isArray(value)) return value.length ? messageText(value[value.length - 1]) : null;
    if (typeof value === "object") {
      if (Array.isArray(value.messages)) return messageText(value.messages);
      for (const k of TEXT_KEYS) {
        if (k in value) {
          const t = messageText(value[k]);
          if (t !== null) return t;
        }
      }
    }
    return null;
  }

  function bubble(role, body, extra) {
    return h("div", { class: "msg msg-" + role, dataset: { role: role } },
      h("div", { class: "msg-role" }, role), h("div", { class: "msg-body" }, body), extra || null);
  }

  function textOrJson(value) {
    const text = messageText(value);
    return text !== null ? h("div", { class: "msg-text" }, text) : jsonBlock(value);
  }

  function showSession(sessionId) {
    const gen = generation;
    document.title = sessionId + " · session · tracemux";
    const head = h("header", { class: "run-head", id: "session-head" });
    const convo = h("div", { class: "conversation", id: "conversation" });
    app.replaceChildren(h("section", { class: "session-view" },
      h("a", { class: "back", href: "/sessions", "data-nav": true }, "← Sessions"), head, convo));

    function turn(r, i) {
      const parts = [
        h("div", { class: "turn-head" },
          h("span", { class: "turn-no" }, "#" + (i + 1)),
          h("a", { href: runHref(r.run_id), "data-nav": true, class: "run-link" }, r.name || "(unnamed)"),
          statusPill(r.status),
          h("span", { class: "muted" }, dateTime(r.start_ns) + " · " +
            (r.status === "running" ? "running…" : fmtDur(r.duration_ms)) + " · " +
            fmtTokens(r.input_tokens, r.output_tokens) + " tokens · " + fmtUsd(r.cost))),
      ];
      if (r.inputs !== null && r.inputs !== undefined) parts.push(bubble("user", textOrJson(r.inputs)));
      if (r.outputs !== null && r.outputs !== undefined) {
        parts.push(bubble("assistant", textOrJson(r.outputs)));
      }
      if (r.error) {
        parts.push(bubble("error", h("div", { class: "msg-text" },
          (r.error.type || "Error") + ": " + (r.error.message || ""))));
      }
      return h("article", { class: "turn", dataset: { runId: r.run_id } }, parts);
    }

    async function load() {
      if (gen !== generation) return;
      try {
        const data = await getJSON("/api/sessions/" + encodeURIComponent(sessionId));
        if (gen !== generation) return;
        const runs = data.runs;
        const tokens = runs.reduce((n, r) => n + r.input_tokens + r.output_tokens, 0);
        const errors = runs.filter((r) => r.error_count > 0).length;
        head.replaceChildren(
          h("div", { class: "run-title" }, h("h1", { id: "session-name" }, sessionId)),
          h("div", { class: "run-meta" },
            h("span", { class: "meta" }, h("span", { class: "meta-label" }, "user"),
              data.user_id || "—"),
            h("span", { class: "meta" }, h("span", { class: "meta-label" }, "runs"),
              h("span", { id: "session-runs" }, fmtInt(runs.length))),
            h("span", { class: "meta" }, h("span", { class: "meta-label" }, "tokens"), fmtInt(tokens)),
            h("span", { class: "meta" }, h("span", { class: "meta-label" }, "cost"),
              h("span", { id: "session-cost" }, fmtUsd(data.cost))),
            h("span", { class: "meta" }, h("span", { class: "meta-label" }, "with errors"),
              fmtInt(errors)),
            h("a", { href: listHref({ session: sessionId }), "data-nav": true }, "as a list of runs")));
        convo.replaceChildren(...runs.map(turn));
        setLive("on", "live · updated " + clock(new Date()));
        schedule(gen, load);
      } catch (err) {
        if (gen !== generation) return;
        if (err.status === 404) {
          head.replaceChildren(h("h1", null, "Session not found"));
          convo.replaceChildren();
          setLive("idle", "");
          return;
        }
        setLive("off", "cannot reach the server, retrying…");
        schedule(gen, load);
      }
    }
    load();
  }

  // -- chat view of an LLM span ---------------------------------------------------------------

  // The messages of an LLM call's inputs (OpenAI / LangChain style: role and content,
  // tool calls), or null when they are not in that shape.
  function chatMessages(value) {
    const list = Array.isArray(value) ? value
      : value && typeof value === "object" && Array.isArray(value.messages) ? value.messages : null;
    if (!list || !list.length) return null;
    const out = [];
    for (const m of list) {
      const msg = normalizeMessage(m);
      if (!msg) return null;
      out.push(msg);
    }
    return out;
  }

  function normalizeMessage(m) {
    if (typeof m === "string") return { role: "user", content: m, toolCalls: [] };
    if (!m || typeof m !== "object") return null;
    let role = m.role || m.type || (m.kwargs && m.kwargs.type) || null;
    const src = m.kwargs && typeof m.kwargs === "object" ? m.kwargs : m;
    if (!role) return null;
    role = { human: "user", ai: "assistant", AIMessage: "assistant", HumanMessage: "user",
      SystemMessage: "system", ToolMessage: "tool" }[role] || role;
    const toolCalls = [];
    const calls = src.tool_calls || (src.additional_kwargs && src.additional_kwargs.tool_calls) || [];
    if (Array.isArray(calls)) {
      for (const c of calls) {
        if (!c || typeof c !== "object") continue;
        const fn = c.function || {};
        toolCalls.push({ name: c.name || fn.name || "tool", args: c.args !== undefined ? c.args : fn.arguments });
      }
    }
    return { role: String(role), content: src.content, toolCalls: toolCalls, name: src.name || src.tool_call_id };
  }

  function chatOutput(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "string") return [{ role: "assistant", content: value, toolCalls: [] }];
    if (typeof value === "object" && !Array.isArray(value)) {
      if (Array.isArray(value.choices) && value.choices.length && value.choices[0].message) {
        return value.choices.map((c) => normalizeMessage(c.message)).filter(Boolean);
      }
      if (value.role || value.type) {
        const msg = normalizeMessage(value);
        return msg ? [msg] : null;
      }
      if (Array.isArray(value.generations)) {
        const flat = value.generations.flat();
        const msgs = flat.map((g) => g && (g.message ? normalizeMessage(g.message)
          : typeof g.text === "string" ? { role: "assistant", content: g.text, toolCalls: [] } : null));
        return msgs.every(Boolean) && msgs.length ? msgs : null;
      }
    }
    return chatMessages(value);
  }

  function contentView(content) {
    if (content === null || content === undefined || content === "") return null;
    if (typeof content === "string") return h("div", { class: "msg-text" }, content);
    if (Array.isArray(content)) {
      return content.map((part) => part && typeof part === "object" && part.type === "text"
        ? h("div", { class: "msg-text" }, String(part.text)) : jsonBlock(part));
    }
    return jsonBlock(content);
  }

  function chatView(inputs, outputs) {
    const before = chatMessages(inputs);
    const after = chatOutput(outputs);
    if (!before && !after) return null;
    const msgs = [...(before || []), ...(after || []).map((m) => Object.assign({ output: true }, m))];
    return h("div", { class: "chat", id: "chat" }, msgs.map((m) => bubble(m.role,
      [contentView(m.content), ...m.toolCalls.map((c) => h("div", { class: "tool-call" },
        h("span", { class: "tool-name" }, "→ " + c.name), jsonBlock(c.args)))],
      m.output ? h("div", { class: "msg-note" }, "output") : null)));
  }

  // -- start ---------------------------------------------------------------------------------

  loadInfo().then((i) => {
    storeEl.textContent = i.db + (i.exists ? "" : " (not created yet)");
  }, () => {});
  route();
})();
