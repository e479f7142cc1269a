// DevTeam Runner dashboard: the user's projects and executions, live.
//
// Data: GET /api/devteam/executions/history/{sub} and /active/{sub} for the lists, then the
// live stream (WS /ws/devteam) for every change. On a dropped socket it reconnects with
// exponential backoff and jitter (capped at 30 s) and resumes from the last cursor it saw
// (`since`), so nothing is missed and nothing is applied twice.
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
  const LOG_KEEP = 500;
  const ACTIONS = {
    pause: new Set(["running"]),
    resume: new Set(["paused"]),
    stop: new Set(["running", "paused", "initializing"]),
  };

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
    logs: new Map(), // executionId -> [line]
    selected: null, // projectId whose log is shown
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
    $("log-section").hidden = false;
    $("history").hidden = false;
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
    state.logs.clear();
    state.asked.clear();
    clearTimeout(state.timer);
    if (socket) socket.close(1000);
    for (const id of ["projects", "log-section", "history", "signout"]) $(id).hidden = true;
    $("signin").hidden = false;
    $("project-rows").replaceChildren();
    $("history-rows").replaceChildren();
    $("log").replaceChildren();
    $("who").textContent = "";
    $("log-for").textContent = "";
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
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
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

  async function act(action, projectId, button) {
    button.disabled = true;
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
    if (state.token) render();
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
    } else if (frame.type === "execution-log") {
      const prefix = [p.stage, p.taskId].filter(Boolean).join(" ");
      addLog(frame.executionId, p.level || "info", (p.lines || []).map((l) => `${prefix} | ${l}`));
    } else if (frame.type === "error") {
      addLog(frame.executionId, "error", [
        `${p.stage || ""} ${p.classification || "error"}: ${p.message || ""}`,
      ]);
    }
    return isNew || frame.type === "execution-update" || frame.type === "completion";
  }

  /** An execution first seen on the stream: refresh the lists once to learn the rest. */
  function lookUp(executionId) {
    if (state.asked.has(executionId)) return;
    state.asked.add(executionId);
    setTimeout(() => state.token && loadLists(), 300);
  }

  function addLog(executionId, level, lines) {
    const kept = state.logs.get(executionId) || [];
    for (const text of lines) kept.push({ level, text });
    kept.splice(0, Math.max(0, kept.length - LOG_KEEP));
    state.logs.set(executionId, kept);
    const shown = currentOf(state.selected);
    if (shown && shown.executionId === executionId) {
      const list = $("log");
      for (const text of lines) list.append(logItem({ level, text }));
      while (list.childElementCount > LOG_KEEP) list.firstElementChild.remove();
      list.scrollTop = list.scrollHeight;
    }
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
    renderHistory();
  }

  function projectRow(projectId) {
    const row = document.createElement("tr");
    row.dataset.projectId = projectId;
    const name = button(projectId, () => selectProject(projectId));
    name.classList.add("link");
    name.setAttribute("aria-label", `Show the log of ${projectId}`);
    row.append(cell(name));
    row.append(cell(span("status")));
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.dataset.field = "progress";
    bar.setAttribute("aria-label", `Progress of ${projectId}`);
    row.append(cell(bar, span("percent")));
    for (const field of ["task", "stage", "branch"]) row.append(cell(span(field)));
    const actions = cell();
    for (const action of Object.keys(ACTIONS)) {
      const label = action[0].toUpperCase() + action.slice(1);
      const b = button(label, (event) => act(action, projectId, event.currentTarget));
      b.dataset.action = action;
      b.setAttribute("aria-label", `${label} ${projectId}`);
      actions.append(b);
    }
    row.append(actions);
    return row;
  }

  function fillRow(row, e) {
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    const status = e.status + (e.status === "paused" && e.pauseReason ? ` (${e.pauseReason})` : "");
    field("status").textContent = status;
    field("status").className = `status status-${e.status}`;
    field("progress").value = e.progress || 0;
    field("percent").textContent = `${e.progress || 0}%`;
    field("task").textContent = e.currentTask || "—";
    field("stage").textContent = e.currentStage || "—";
    field("branch").textContent = e.branch || "—";
    const readOnly = (state.claims.role || "developer") === "manager";
    for (const b of row.querySelectorAll("button[data-action]")) {
      b.disabled = readOnly || !ACTIONS[b.dataset.action].has(e.status);
    }
    row.setAttribute("aria-current", row.dataset.projectId === state.selected ? "true" : "false");
  }

  function selectProject(projectId) {
    state.selected = projectId;
    const e = currentOf(projectId);
    $("log-for").textContent = `— ${projectId}`;
    const list = $("log");
    list.replaceChildren(...(state.logs.get(e && e.executionId) || []).map(logItem));
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
        const totals = e.totals ? `${e.totals.completed}/${e.totals.total}` : "—";
        for (const text of [when(e.startedAt), e.projectId, e.status, totals, when(e.finishedAt)]) {
          row.append(cell(text));
        }
        return row;
      });
    $("history-rows").replaceChildren(...rows);
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
    const token = takeTokenFromUrl() || localStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
  });
})();
