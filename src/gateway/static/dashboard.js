// DevTeam Runner dashboard: the user's projects and executions, live.
//
// Data: GET /api/devteam/executions/history/{sub} and /active/{sub} for the lists, then the
// live stream (WS /ws/devteam) for every change. On a dropped socket it reconnects with
// exponential backoff and jitter (capped at 30 s) and resumes from the last cursor it saw
// (`since`), so nothing is missed and nothing is applied twice.
//
// The execution view (a project's current execution, or any from the history): its detail
// from GET /api/devteam/executions/{id} (read again when a frame says it changed; the
// actions it enables are the ones that answer allows), and its whole log from a second
// socket scoped to its project with since=0, filtered to the execution: history first, then
// live until its completion frame. The usage panel reads GET /api/devteam/usage/{customer}
// and draws its per-day chart as plain SVG elements.
//
// The token: read from the form, from localStorage, or once from ?token= (then removed
// from the address bar). It goes only into the Authorization header and the WebSocket's
// query string (browsers cannot set WebSocket headers). It is never logged.
// The page builds the DOM with textContent only (no innerHTML), under a strict CSP.
"use strict";

(() => {
  const TOKEN_KEY = "devteam.token";
  const BASE_MS = 500;
  const CAP_MS = 30000;
  const LOG_KEEP = 2000;
  const ACTIONS = ["pause", "resume", "stop"]; // which are allowed comes from the API
  const SVG = "http://www.w3.org/2000/svg";

  /** Delay before reconnect attempt `attempt` (0-based): exponential, capped, jittered
   *  ("equal jitter": between half and all of min(cap, base * 2^attempt)). */
  function backoffMs(attempt, random = Math.random) {
    const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** Math.min(attempt, 20));
    return ceiling / 2 + (random() * ceiling) / 2;
  }
  window.DevteamDashboard = { backoffMs, CAP_MS };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    claims: null,
    executions: new Map(), // executionId -> execution
    selected: null, // projectId selected in the projects table
    // the execution shown: `follow` = the selected project's current one, kept up to date
    view: { executionId: null, projectId: null, follow: false, detail: null,
      loading: false, again: false },
    // the shown execution's log socket (project-scoped, since=0, filtered to it)
    log: { socket: null, cursor: null, attempt: 0, timer: null, done: false, count: 0 },
    usage: { customer: null, loading: false, again: false, data: null },
    cursor: null, // last frame id seen (resume cursor)
    socket: null,
    attempt: 0,
    timer: null,
    loaded: false,
    loading: null, // frames received while the lists load are applied afterwards
    reloadWanted: false,
    asked: new Set(), // unknown executions already looked up
  };

  // ---- token --------------------------------------------------------------------------
  function claimsOf(token) {
    const part = token.split(".")[1];
    if (!part) throw new Error("not a JWT");
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims.sub !== "string") throw new Error("the token has no subject");
    return claims;
  }

  function takeTokenFromUrl() {
    const url = new URL(location.href);
    const token = url.searchParams.get("token");
    if (token === null) return null;
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
    return token;
  }

  function signIn(token) {
    let claims;
    try {
      claims = claimsOf(token.trim());
    } catch (err) {
      notice(`That is not a usable token (${err.message}).`);
      return;
    }
    state.token = token.trim();
    state.claims = claims;
    localStorage.setItem(TOKEN_KEY, state.token);
    $("signin").hidden = true;
    $("signout").hidden = false;
    $("projects").hidden = false;
    $("execution").hidden = false;
    $("log-section").hidden = false;
    $("history").hidden = false;
    $("usage").hidden = false;
    const role = claims.role || "developer";
    $("who").textContent = `${claims.sub} (${role}${role === "manager" ? ", read-only" : ""})`;
    notice("");
    connect();
  }

  function signOut(message) {
    localStorage.removeItem(TOKEN_KEY);
    const socket = state.socket;
    Object.assign(state, { token: null, claims: null, socket: null, cursor: null, attempt: 0 });
    Object.assign(state, { loaded: false, selected: null });
    state.executions.clear();
    state.asked.clear();
    clearTimeout(state.timer);
    if (socket) socket.close(1000);
    closeLog();
    Object.assign(state.view, { executionId: null, projectId: null, follow: false,
      detail: null });
    Object.assign(state.usage, { customer: null, data: null });
    for (const id of ["projects", "execution", "log-section", "history", "usage", "signout"]) {
      $(id).hidden = true;
    }
    $("signin").hidden = false;
    for (const id of ["project-rows", "history-rows", "log", "task-rows", "error-rows",
      "execution-summary", "execution-actions", "usage-rows", "usage-total", "usage-chart",
      "usage-customer"]) {
      $(id).replaceChildren();
    }
    $("execution-body").hidden = true;
    $("execution-empty").hidden = false;
    $("usage-body").hidden = true;
    for (const id of ["who", "log-for", "execution-for", "log-state", "usage-state"]) {
      $(id).textContent = "";
    }
    setConnection("Not connected");
    notice(message);
  }

  // ---- API ----------------------------------------------------------------------------
  async function api(path, options = {}) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${state.token}` };
    const response = await fetch(path, { ...options, headers: { ...headers, ...options.headers } });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signOut("The token was rejected (expired or invalid). Sign in again.");
    }
    if (!response.ok) {
      const error = new Error(body.detail || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function idempotencyKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** Fetch the lists; frames arriving meanwhile are applied after them, in order. */
  async function loadLists() {
    if (state.loading) {
      state.reloadWanted = true;
      return;
    }
    state.loading = [];
    try {
      const sub = encodeURIComponent(state.claims.sub);
      const [history, active] = await Promise.all([
        api(`/api/devteam/executions/history/${sub}?limit=50`),
        api(`/api/devteam/executions/active/${sub}`),
      ]);
      for (const summary of [...history, ...active]) upsert(summary);
      state.loaded = true;
      fillCustomers();
    } catch (err) {
      if (state.token) notice(`Could not load executions: ${err.message}`);
    } finally {
      const pending = state.loading || [];
      state.loading = null;
      if (state.token) {
        pending.forEach(apply);
        render();
      }
      if (state.reloadWanted && state.token) {
        state.reloadWanted = false;
        loadLists();
      }
    }
  }

  function upsert(summary) {
    const known = state.executions.get(summary.executionId) || {};
    state.executions.set(summary.executionId, { ...known, ...summary });
  }

  async function act(action, projectId) {
    // every action button waits for the detail read after it: that says what is allowed now
    for (const b of $("execution-actions").querySelectorAll("button")) b.disabled = true;
    try {
      const result = await api(`/api/devteam/automation/${action}/${projectId}`, {
        method: "POST",
        headers: { "Idempotency-Key": idempotencyKey() },
      });
      const execution = state.executions.get(result.executionId);
      if (execution) execution.status = result.status;
      notice("");
    } catch (err) {
      if (state.token) notice(`${action} ${projectId}: ${err.message}`);
    }
    if (state.token) {
      render();
      loadDetail();
    }
  }

  // ---- live stream --------------------------------------------------------------------
  function connect() {
    clearTimeout(state.timer);
    const params = new URLSearchParams({ token: state.token });
    if (state.cursor !== null) params.set("since", state.cursor);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/devteam?${params}`);
    state.socket = socket;
    setConnection("Connecting…");
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      receive(frame);
    };
    socket.onclose = (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      if (event.code === 4401) {
        // a stream ends when its token expires; signing in again reloads the state
        const expired = event.reason === "token expired";
        return signOut(expired ? "The token expired. Sign in again."
          : "The token was rejected. Sign in again.");
      }
      if (event.code === 4403) {
        setConnection("Not allowed");
        return notice("This token may not watch those projects.");
      }
      const delay = backoffMs(state.attempt);
      state.attempt += 1;
      setConnection(`Disconnected; reconnecting in ${Math.ceil(delay / 1000)} s`);
      state.timer = setTimeout(connect, delay);
    };
  }

  function receive(frame) {
    if (frame.type === "connection-established") {
      state.attempt = 0;
      setConnection("Live");
      if (!state.loaded) loadLists();
      resumeLogNow();
      return;
    }
    if (frame.type === "resync") {
      setConnection("Live (catching up)");
      // frames before the cursor were pruned by retention: the lists are read again
      if (frame.payload && frame.payload.prunedUpTo) loadLists();
      return;
    }
    if (frame.id !== null && frame.id !== undefined) state.cursor = frame.id;
    if (!frame.executionId) return; // pong and error replies to client frames
    if (state.loading) state.loading.push(frame);
    else if (apply(frame)) render();
  }

  /** Apply one frame to the model; true when the tables need drawing again. */
  function apply(frame) {
    const p = frame.payload || {};
    let execution = state.executions.get(frame.executionId);
    const isNew = !execution;
    if (isNew) {
      execution = {
        executionId: frame.executionId,
        projectId: frame.projectId,
        customerId: frame.customerId,
        status: "unknown",
        progress: 0,
        startedAt: frame.ts,
      };
      state.executions.set(frame.executionId, execution);
      lookUp(frame.executionId);
    }
    if (frame.type === "execution-update") {
      Object.assign(execution, {
        status: p.status,
        progress: p.progress ?? execution.progress,
        currentStage: p.stage,
        currentTask: p.taskId,
        branch: p.branch,
        pauseReason: p.pauseReason,
        totals: { completed: p.completedTasks, total: p.totalTasks },
      });
    } else if (frame.type === "completion") {
      execution.status = p.status;
      execution.finishedAt = frame.ts;
      execution.totals = { completed: p.completedTasks, total: p.totalTasks };
      if (p.status === "completed") execution.progress = 100;
    }
    const changed = frame.type === "execution-update" || frame.type === "completion";
    if (frame.executionId === state.view.executionId && (changed || frame.type === "error")) {
      loadDetail();
    }
    if (frame.type === "completion" && frame.customerId === state.usage.customer) loadUsage();
    return isNew || changed;
  }

  /** An execution first seen on the stream: refresh the lists once to learn the rest. */
  function lookUp(executionId) {
    if (state.asked.has(executionId)) return;
    state.asked.add(executionId);
    setTimeout(() => state.token && loadLists(), 300);
  }

  // ---- view ---------------------------------------------------------------------------
  function currentOf(projectId) {
    let best = null;
    for (const e of state.executions.values()) {
      if (e.projectId !== projectId) continue;
      if (!best || (e.startedAt || "") > (best.startedAt || "")) best = e;
    }
    return best;
  }

  function projects() {
    return [...new Set([...state.executions.values()].map((e) => e.projectId))].sort();
  }

  function render() {
    const names = projects();
    $("projects-empty").hidden = names.length > 0;
    $("projects-table").hidden = names.length === 0;
    if (state.selected === null && names.length) selectProject(names[0]);
    const body = $("project-rows");
    for (const projectId of names) {
      let row = body.querySelector(`tr[data-project-id="${projectId}"]`);
      if (!row) {
        row = projectRow(projectId);
        body.append(row);
      }
      fillRow(row, currentOf(projectId));
    }
    // following a project: a newer execution of it becomes the one shown
    const current = state.selected && currentOf(state.selected);
    if (state.view.follow && current && current.executionId !== state.view.executionId) {
      showExecution(current.executionId, true);
    }
    renderHistory();
  }

  function projectRow(projectId) {
    const row = document.createElement("tr");
    row.dataset.projectId = projectId;
    const name = button(projectId, () => selectProject(projectId));
    name.classList.add("link");
    name.setAttribute("aria-label", `Show the execution of ${projectId}`);
    row.append(cell(name));
    row.append(cell(span("status")));
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.dataset.field = "progress";
    bar.setAttribute("aria-label", `Progress of ${projectId}`);
    row.append(cell(bar, span("percent")));
    for (const field of ["task", "stage", "branch"]) row.append(cell(span(field)));
    return row;
  }

  function statusText(e) {
    return e.status + (e.status === "paused" && e.pauseReason ? ` (${e.pauseReason})` : "");
  }

  function fillRow(row, e) {
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    field("status").textContent = statusText(e);
    field("status").className = `status status-${e.status}`;
    field("progress").value = e.progress || 0;
    field("percent").textContent = `${e.progress || 0}%`;
    field("task").textContent = e.currentTask || "—";
    field("stage").textContent = e.currentStage || "—";
    field("branch").textContent = e.branch || "—";
    row.setAttribute("aria-current", row.dataset.projectId === state.selected ? "true" : "false");
  }

  function selectProject(projectId) {
    state.selected = projectId;
    const e = currentOf(projectId);
    if (e) showExecution(e.executionId, true);
    for (const row of $("project-rows").children) {
      row.setAttribute("aria-current", row.dataset.projectId === projectId ? "true" : "false");
    }
  }

  function renderHistory() {
    const rows = [...state.executions.values()]
      .sort((a, b) => (b.startedAt || "").localeCompare(a.startedAt || ""))
      .slice(0, 50)
      .map((e) => {
        const row = document.createElement("tr");
        row.dataset.executionId = e.executionId;
        const totals = e.totals ? `${e.totals.completed}/${e.totals.total}` : "—";
        for (const text of [when(e.startedAt), e.projectId, e.status, totals, when(e.finishedAt)]) {
          row.append(cell(text));
        }
        const view = button("View", () => {
          state.selected = e.projectId;
          showExecution(e.executionId, false);
          render();
        });
        view.setAttribute("aria-label",
          `Show execution ${e.executionId.slice(0, 8)} of ${e.projectId}`);
        row.append(cell(view));
        const shown = e.executionId === state.view.executionId;
        row.setAttribute("aria-current", shown ? "true" : "false");
        return row;
      });
    $("history-rows").replaceChildren(...rows);
  }

  // ---- the execution view ---------------------------------------------------------------
  /** Show one execution: its detail, and its log from the start (then live). */
  function showExecution(executionId, follow) {
    state.view.follow = follow;
    if (state.view.executionId === executionId) return;
    const e = state.executions.get(executionId);
    Object.assign(state.view, { executionId, projectId: e ? e.projectId : null, detail: null });
    $("execution-for").textContent = `— ${executionId.slice(0, 8)}${e ? ` of ${e.projectId}` : ""}`;
    $("log-for").textContent = e ? `— ${e.projectId}, execution ${executionId.slice(0, 8)}` : "";
    $("execution-empty").textContent = "Loading…";
    $("execution-empty").hidden = false;
    $("execution-body").hidden = true;
    openLog();
    loadDetail();
    renderHistory();
  }

  /** Read the shown execution's detail; calls while one is in flight read once more after. */
  async function loadDetail() {
    const view = state.view;
    if (!view.executionId || !state.token) return;
    if (view.loading) {
      view.again = true;
      return;
    }
    view.loading = true;
    const executionId = view.executionId;
    try {
      const detail = await api(`/api/devteam/executions/${encodeURIComponent(executionId)}`);
      if (view.executionId === executionId) {
        view.detail = detail;
        renderDetail(detail);
        if (!view.projectId) {
          view.projectId = detail.projectId; // not in the lists: its log can start now
          connectLog();
        }
      }
    } catch (err) {
      if (state.token && view.executionId === executionId) {
        $("execution-empty").textContent = `The detail of this execution is not available: ${
          err.message}.`;
        $("execution-empty").hidden = false;
        $("execution-body").hidden = true;
      }
    } finally {
      view.loading = false;
      if (view.again) {
        view.again = false;
        loadDetail();
      }
    }
  }

  function renderDetail(d) {
    $("execution-empty").hidden = true;
    $("execution-body").hidden = false;
    const u = d.usage || {};
    const facts = [
      ["Project", d.projectId],
      ["Status", statusText(d)],
      ["Started by", d.userId],
      ["Started", when(d.startedAt)],
      ["Finished", when(d.finishedAt)],
      ["Tasks done", `${d.totals.completed} of ${d.totals.total}`],
      ["Tokens sent / received", `${count(u.tokensSent)} / ${count(u.tokensReceived)}`],
      ["Cost", money(u.cost)],
      ["CPU", seconds(u.cpuSeconds)],
      ["Peak memory", bytes(u.peakMemoryBytes)],
    ];
    const dl = $("execution-summary");
    dl.replaceChildren();
    for (const [term, value] of facts) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (term === "Status") dd.className = `status status-${d.status}`;
      dd.dataset.field = term.toLowerCase().replace(/[^a-z]+/g, "-");
      dl.append(dt, dd);
    }
    renderActions(d);
    renderTasks(d.tasks);
    renderErrors(d);
  }

  /** Pause/Resume/Stop of the shown execution's project, enabled as the detail says. */
  function renderActions(d) {
    const box = $("execution-actions");
    if (box.dataset.projectId !== d.projectId) {
      box.replaceChildren();
      for (const action of ACTIONS) {
        const label = action[0].toUpperCase() + action.slice(1);
        const b = button(label, () => act(action, d.projectId));
        b.dataset.action = action;
        b.setAttribute("aria-label", `${label} ${d.projectId}`);
        box.append(b);
      }
      box.dataset.projectId = d.projectId;
    }
    for (const b of box.querySelectorAll("button[data-action]")) {
      b.disabled = !(d.actions && d.actions[b.dataset.action]);
    }
  }

  function renderTasks(tasks) {
    $("tasks-empty").hidden = tasks.length > 0;
    $("tasks-table").hidden = tasks.length === 0;
    $("task-rows").replaceChildren(...tasks.map((t) => {
      const row = document.createElement("tr");
      row.dataset.taskId = t.taskId;
      const name = document.createElement("span");
      name.dataset.field = "task";
      name.textContent = t.title ? `${t.taskId} ${t.title}` : t.taskId;
      const status = span("status");
      status.textContent = t.status;
      status.className = `status task-${t.status}`;
      const criteria = document.createElement("ul");
      criteria.className = "criteria";
      criteria.dataset.field = "criteria";
      for (const c of t.criteria) {
        const li = document.createElement("li");
        li.className = c.passed ? "passed" : "failed";
        li.dataset.criterion = c.name;
        li.textContent = `${c.passed ? "✓" : "✗"} ${c.name}: ${show(c.actual)} / ${
          show(c.required)}`;
        if (c.detail) li.title = c.detail;
        criteria.append(li);
      }
      if (!t.criteria.length) criteria.append(Object.assign(document.createElement("li"),
        { textContent: "—" }));
      const stages = document.createElement("ul");
      stages.className = "stages";
      stages.dataset.field = "stages";
      for (const s of t.stages) {
        const li = document.createElement("li");
        li.dataset.stage = s.stage;
        li.textContent = `${s.stage}${s.runs > 1 ? ` ×${s.runs}` : ""} ${seconds(s.durationMs / 1000)}`;
        stages.append(li);
      }
      const u = t.usage || {};
      row.append(
        cell(name), cell(status), cell(text("branch", t.branch || "—")),
        cell(text("attempts", String(t.attempts))), cell(criteria), cell(stages),
        cell(text("tokens", `${count(u.tokensSent)} / ${count(u.tokensReceived)}`)),
        cell(text("cost", money(u.cost))),
      );
      return row;
    }));
  }

  function renderErrors(d) {
    $("errors-empty").hidden = d.errors.length > 0;
    $("errors-table").hidden = d.errors.length === 0;
    $("errors-count").textContent = d.errorCount > d.errors.length
      ? `(newest ${d.errors.length} of ${d.errorCount})` : "";
    $("error-rows").replaceChildren(...d.errors.map((e) => {
      const row = document.createElement("tr");
      row.dataset.errorId = e.errorId;
      for (const value of [when(e.createdAt), e.taskId || "—", e.stage, e.classification,
        e.message, String(e.attempts)]) {
        row.append(cell(value));
      }
      return row;
    }));
  }

  // ---- the shown execution's log: its project's stream from the start, filtered ----------
  function closeLog() {
    const log = state.log;
    clearTimeout(log.timer);
    log.timer = null;
    const socket = log.socket;
    log.socket = null;
    if (!socket) return;
    // closing one still connecting makes the browser report an error: close it once open
    if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(1000);
    else socket.close(1000);
  }

  function openLog() {
    closeLog();
    Object.assign(state.log, { cursor: "0", attempt: 0, done: false, count: 0 });
    $("log").replaceChildren();
    $("log-state").textContent = "";
    if (state.view.projectId) connectLog();
  }

  function connectLog() {
    const log = state.log;
    const executionId = state.view.executionId;
    const params = new URLSearchParams({
      token: state.token, projectId: state.view.projectId, since: log.cursor,
      types: "execution-log,error,completion",
    });
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/devteam?${params}`);
    log.socket = socket;
    $("log-state").textContent = "Reading the log…";
    socket.onmessage = (event) => {
      if (log.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      logFrame(frame, executionId);
    };
    socket.onclose = (event) => {
      if (log.socket !== socket) return;
      log.socket = null;
      if (log.done || event.code === 4401 || event.code === 4403) return;
      const delay = backoffMs(log.attempt);
      log.attempt += 1;
      $("log-state").textContent = "Log disconnected; reconnecting…";
      log.timer = setTimeout(() => {
        log.timer = null;
        if (state.token) connectLog();
      }, delay);
    };
  }

  /** The main socket is back, so the server is: a log socket waiting out its backoff
   *  reconnects now (from its cursor) instead of at the end of it. */
  function resumeLogNow() {
    const log = state.log;
    if (log.timer === null || log.socket || log.done) return;
    clearTimeout(log.timer);
    log.timer = null;
    connectLog();
  }

  function logFrame(frame, executionId) {
    const log = state.log;
    if (frame.type === "connection-established") {
      log.attempt = 0;
      $("log-state").textContent = "Replaying the log from its start, then live";
      return;
    }
    if (frame.type === "resync") {
      if (frame.payload && frame.payload.prunedUpTo) {
        addLines("warning", ["(earlier lines of this log are no longer kept)"]);
      }
      return;
    }
    if (frame.id === null || frame.id === undefined) return;
    if (!isAfter(frame.id, log.cursor)) return; // already shown (a resumed socket)
    log.cursor = frame.id;
    if (frame.executionId !== executionId) return;
    const p = frame.payload || {};
    if (frame.type === "execution-log") {
      const prefix = [p.stage, p.taskId].filter(Boolean).join(" ");
      addLines(p.level || "info", (p.lines || []).map((l) => `${prefix} | ${l}`));
    } else if (frame.type === "error") {
      addLines("error", [`${p.stage || ""} ${p.classification || "error"}: ${p.message || ""}`]);
    } else if (frame.type === "completion") {
      log.done = true;
      $("log-state").textContent = `The whole log (${log.count} lines); the execution ended: ${
        p.status}`;
      closeLog();
    }
  }

  /** Cursors are decimal strings of up to 19 digits: compare them without Number(). */
  function isAfter(id, cursor) {
    const a = String(id);
    const b = String(cursor);
    return a.length !== b.length ? a.length > b.length : a > b;
  }

  function addLines(level, lines) {
    const list = $("log");
    for (const line of lines) list.append(logItem({ level, text: line }));
    state.log.count += lines.length;
    while (list.childElementCount > LOG_KEEP) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  // ---- usage per customer -----------------------------------------------------------------
  function customers() {
    const names = new Set();
    for (const grant of state.claims.projects || []) names.add(grant.split("/")[0]);
    for (const e of state.executions.values()) if (e.customerId) names.add(e.customerId);
    return [...names].sort();
  }

  function fillCustomers() {
    const select = $("usage-customer");
    const names = customers();
    const known = [...select.options].map((o) => o.value);
    if (names.join("\n") !== known.join("\n")) {
      select.replaceChildren(...names.map((n) => Object.assign(document.createElement("option"),
        { value: n, textContent: n })));
    }
    if (!names.length) {
      $("usage-state").textContent = "No customer to show usage for.";
      return;
    }
    if (!state.usage.customer || !names.includes(state.usage.customer)) {
      state.usage.customer = names[0];
      select.value = names[0];
      loadUsage();
    }
  }

  async function loadUsage() {
    const usage = state.usage;
    if (!usage.customer || !state.token) return;
    if (!["manager", "admin"].includes(state.claims.role)) {
      $("usage-state").textContent = "Usage is shown to the customer's managers and admins.";
      return;
    }
    if (usage.loading) {
      usage.again = true;
      return;
    }
    usage.loading = true;
    const customer = usage.customer;
    try {
      const data = await api(`/api/devteam/usage/${encodeURIComponent(customer)}`);
      if (usage.customer === customer) {
        usage.data = data;
        $("usage-state").textContent = "";
        renderUsage();
      }
    } catch (err) {
      if (state.token && usage.customer === customer) {
        usage.data = null;
        $("usage-body").hidden = true;
        $("usage-state").textContent = err.status === 403
          ? `Usage of ${customer} is shown to its managers and admins.`
          : `Could not load the usage of ${customer}: ${err.message}`;
      }
    } finally {
      usage.loading = false;
      if (usage.again) {
        usage.again = false;
        loadUsage();
      }
    }
  }

  const USAGE_COLUMNS = [
    ["tokensSent", count], ["tokensReceived", count], ["cost", money], ["cpuSeconds", seconds],
    ["peakMemoryBytes", bytes], ["wallSeconds", seconds],
  ];

  function usageRow(label, totals, heading) {
    const row = document.createElement("tr");
    const th = document.createElement(heading ? "th" : "td");
    if (heading) th.scope = "row";
    th.textContent = label;
    row.append(th);
    for (const [name, format] of USAGE_COLUMNS) {
      row.append(cell(text(name, format((totals || {})[name]))));
    }
    return row;
  }

  function renderUsage() {
    const data = state.usage.data;
    if (!data) return;
    $("usage-body").hidden = false;
    $("usage-range").textContent = `From ${data.from || "the start"} to ${data.to || "now"}`;
    const projectsList = data.projects || [];
    $("usage-rows").replaceChildren(...projectsList.map((p) => {
      const row = usageRow(p.projectId, p.totals, false);
      row.dataset.projectId = p.projectId;
      return row;
    }));
    const total = usageRow("Total", data.totals, true);
    total.dataset.total = "true";
    $("usage-total").replaceChildren(total);
    drawChart(projectsList, $("usage-metric").value, data.from, data.to);
  }

  /** Every UTC day from `from` to `to` (YYYY-MM-DD, inclusive; at most 366 of them). */
  function daysBetween(from, to) {
    const out = [];
    const day = new Date(`${from}T00:00:00Z`);
    const last = new Date(`${to}T00:00:00Z`);
    if (Number.isNaN(day.getTime()) || Number.isNaN(last.getTime())) return out;
    while (day <= last && out.length < 366) {
      out.push(day.toISOString().slice(0, 10));
      day.setUTCDate(day.getUTCDate() + 1);
    }
    return out;
  }

  function metricOf(day, metric) {
    if (metric === "tokens") return (day.tokensSent || 0) + (day.tokensReceived || 0);
    return day[metric] || 0;
  }

  /** Bars per day (all projects together) as SVG rects; text nodes only, no markup. */
  function drawChart(projectsList, metric, from, to) {
    const byDay = new Map(daysBetween(from, to).map((d) => [d, 0])); // days without usage: 0
    for (const p of projectsList) {
      for (const day of p.days || []) {
        byDay.set(day.date, (byDay.get(day.date) || 0) + metricOf(day, metric));
      }
    }
    const days = [...byDay.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    const label = $("usage-metric").selectedOptions[0].textContent;
    $("usage-chart-title").textContent = `${label} per day`;
    const svg = $("usage-chart");
    const width = 720;
    const height = 220;
    const [left, bottom, top] = [64, 40, 16];
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.replaceChildren();
    const el = (name, attrs, content) => {
      const node = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (content !== undefined) node.textContent = content;
      svg.append(node);
      return node;
    };
    el("line", { x1: left, y1: height - bottom, x2: width - 8, y2: height - bottom,
      class: "axis" });
    const max = Math.max(0, ...days.map(([, v]) => v));
    if (!max) {
      el("text", { x: left + 8, y: height / 2, class: "chart-empty" }, "No usage in this period");
      return;
    }
    const format = metric === "cost" ? money : metric === "tokens" ? count : seconds;
    el("text", { x: left - 6, y: top + 4, class: "tick", "text-anchor": "end" }, format(max));
    el("text", { x: left - 6, y: height - bottom, class: "tick", "text-anchor": "end" },
      format(0));
    const slot = (width - 8 - left) / days.length;
    const barWidth = Math.max(2, Math.min(48, slot * 0.7));
    const every = Math.ceil(days.length / 12); // at most ~12 date labels
    days.forEach(([date, value], i) => {
      const h = ((height - bottom - top) * value) / max;
      const x = left + i * slot + (slot - barWidth) / 2;
      const bar = el("rect", { x, y: height - bottom - h, width: barWidth, height: h,
        class: "bar", "data-date": date, "data-value": value });
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${date}: ${format(value)}`;
      bar.append(tip);
      if (i % every === 0) {
        el("text", { x: x + barWidth / 2, y: height - bottom + 16, class: "tick",
          "text-anchor": "middle" }, date.slice(5));
      }
    });
  }

  // ---- small DOM helpers ----------------------------------------------------------------
  function cell(...children) {
    const td = document.createElement("td");
    td.append(...children);
    return td;
  }

  function span(fieldName) {
    const s = document.createElement("span");
    s.dataset.field = fieldName;
    return s;
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function text(fieldName, value) {
    const s = span(fieldName);
    s.textContent = value;
    return s;
  }

  function show(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function count(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : "—";
  }

  function money(n) {
    return typeof n === "number" ? `$${n.toFixed(n >= 100 ? 0 : 4)}` : "—";
  }

  function seconds(n) {
    return typeof n === "number" ? `${n.toFixed(1)} s` : "—";
  }

  function bytes(n) {
    return typeof n === "number" ? `${(n / 1048576).toFixed(1)} MiB` : "—";
  }

  function logItem(entry) {
    const li = document.createElement("li");
    li.className = `level-${entry.level}`;
    li.textContent = entry.text;
    return li;
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
  }

  function notice(message) {
    $("notice").textContent = message;
    $("notice").hidden = !message;
  }

  function setConnection(text) {
    $("connection").textContent = text;
  }

  // ---- start --------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn($("token").value);
      $("token").value = "";
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("usage-form").addEventListener("submit", (event) => event.preventDefault());
    $("usage-customer").addEventListener("change", (event) => {
      state.usage.customer = event.currentTarget.value;
      loadUsage();
    });
    $("usage-metric").addEventListener("change", renderUsage);
    const token = takeTokenFromUrl() || localStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
  });
})();
