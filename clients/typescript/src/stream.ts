/**
 * The live stream: WebSocket (`/ws/devteam`) with a Server-Sent Events fallback
 * (`/api/devteam/stream`), the same frames on both.
 *
 * - Resumes from the last cursor it delivered (`since` / `Last-Event-ID`): the gateway
 *   replays every frame after it, then live ones, with no gap and no duplicate.
 * - Reconnects with exponential backoff and full jitter, capped at 30 s.
 * - `transport: "auto"` (the default) uses WebSocket; when a WebSocket cannot be opened
 *   (and none ever opened on this stream) it switches to SSE for good.
 * - Close 4401 (bad or expired token): asks `refreshToken` for a new one and resumes with
 *   it; without one it stops. It never loops: a refreshed token that is refused at once
 *   stops it too. Close 4403 (project not granted) and 4400 (bad query) stop it.
 * - `onState` hears `connecting`, `replaying` (connected with a cursor, the backlog still
 *   arriving), `live` (from the gateway's `replay-complete` frame on: the backlog is over;
 *   at once on a connection without a cursor), `backing-off` and `closed`.
 */
import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { parseFrame, type Frame, type FrameType } from "./frames.js";
import { SseParser } from "./sse.js";

export type ConnectionState = "connecting" | "live" | "replaying" | "backing-off" | "closed";
export type Transport = "websocket" | "sse";

/** What `onState` is told beside the state. */
export interface StateInfo {
  transport: Transport;
  /** Connection attempts so far (the first is 1). */
  attempt: number;
  /** The cursor the stream resumes from (undefined before the first data frame). */
  cursor: string | undefined;
  /** `backing-off`: how long until the next attempt (ms). */
  delayMs?: number;
  /** `closed`: why. */
  close?: CloseInfo;
}

export interface CloseInfo {
  reason: "client" | "unauthorized" | "forbidden" | "bad-request";
  /** The close code that stopped it (4401, 4403, 4400; the HTTP status on SSE). */
  code?: number;
  detail?: string;
}

/** The subset of the WHATWG WebSocket the client uses (browsers' and the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface TokenRefreshContext {
  /** 4401 on WebSocket; 401 on SSE. */
  code: number;
  detail: string;
}

export interface StreamOptions {
  /** The gateway's base URL (`http://…` or `https://…`). */
  baseUrl: string;
  /** The bearer token of the first connection. */
  token: string;
  /** Called on 4401 (expired or refused token): a new token to resume with, or
   * null/undefined to stop. */
  refreshToken?: (context: TokenRefreshContext) => Promise<string | null | undefined> | string | null | undefined;
  /** Projects to watch (none: every project the token grants). */
  projectIds?: string[];
  /** Only these frame types (control frames always arrive). */
  types?: Array<Exclude<FrameType, "connection-established" | "resync" | "pong" | "replay-complete">>;
  /** Minimum log level of `execution-log` frames. */
  level?: "debug" | "info" | "warning" | "error";
  /** Start after this cursor (e.g. one stored from an earlier session; "0" = all kept). */
  since?: string;
  /** `auto` (default): WebSocket, falling back to SSE when a WebSocket cannot be opened. */
  transport?: "auto" | Transport;
  /** The WebSocket class (default: the global one, else the `ws` package). */
  WebSocket?: WebSocketConstructor;
  /** `fetch` for SSE (default: the global one). */
  fetch?: typeof fetch;
  backoff?: BackoffOptions;
  /** With nothing received this long, the connection is dropped and resumed (default 60 s).
   * On WebSocket the client sends a `ping` every third of it (at most every 20 s) and the
   * `pong` counts; on SSE only the server's keep-alive does (every 20 s): keep it above that. */
  idleTimeoutMs?: number;
  onFrame: (frame: Frame) => void;
  onState?: (state: ConnectionState, info: StateInfo) => void;
  /** Connection failures that are retried (for logging); fatal ones arrive in `closed`. */
  onError?: (error: Error) => void;
}

/** How one connection ended. */
type Ended =
  | { kind: "lost"; opened: boolean; detail: string }
  | { kind: "unauthorized"; established: boolean; code: number; detail: string }
  | { kind: "forbidden"; code: number; detail: string }
  | { kind: "bad-request"; code: number; detail: string }
  | { kind: "stopped" };

const EXPIRED = "token expired";

export class LiveStream {
  /** Where the stream resumes: the cursor of the last data frame delivered, or of the
   * last `replay-complete` (the position the gateway said this connection caught up to). */
  cursor: string | undefined;
  state: ConnectionState = "closed";
  /** Connection attempts made. */
  attempts = 0;
  transport: Transport;
  /** Resolves when the stream stops for good. */
  readonly done: Promise<CloseInfo>;

  private token: string;
  private stopped = false;
  private webSocketOpened = false;
  private abort: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private resolveDone!: (info: CloseInfo) => void;
  private readonly options: StreamOptions;

  constructor(options: StreamOptions) {
    this.options = options;
    this.token = options.token;
    this.cursor = options.since;
    this.transport = options.transport === "sse" ? "sse" : "websocket";
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** Start connecting (returns at once; frames arrive on `onFrame`). */
  start(): this {
    void this.run();
    return this;
  }

  /** Stop for good: closes the connection, cancels a pending reconnect. */
  close(): void {
    this.stopped = true;
    this.abort?.();
    this.wake?.();
  }

  private setState(state: ConnectionState, extra: Partial<StateInfo> = {}): void {
    this.state = state;
    this.options.onState?.(state, {
      transport: this.transport,
      attempt: this.attempts,
      cursor: this.cursor,
      ...extra,
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    let refreshed = false;
    let close: CloseInfo = { reason: "client" };
    while (!this.stopped) {
      this.attempts += 1;
      this.setState("connecting");
      const ended = await this.connectOnce();
      if (this.stopped || ended.kind === "stopped") break;
      if (ended.kind === "forbidden") {
        close = { reason: "forbidden", code: ended.code, detail: ended.detail };
        break;
      }
      if (ended.kind === "bad-request") {
        close = { reason: "bad-request", code: ended.code, detail: ended.detail };
        break;
      }
      if (ended.kind === "unauthorized") {
        close = { reason: "unauthorized", code: ended.code, detail: ended.detail };
        // a token refreshed a moment ago and refused at once: asking again would loop
        if (refreshed && !ended.established) break;
        const token = await this.askForToken(ended.code, ended.detail);
        if (this.stopped || !token) break;
        this.token = token;
        refreshed = true;
        failures = 0;
        continue; // resume at once with the new token
      }
      // lost: a network failure, a server restart, an idle connection
      if (ended.opened) {
        failures = 0;
        refreshed = false;
      }
      const auto = (this.options.transport ?? "auto") === "auto";
      if (auto && this.transport === "websocket" && !ended.opened && !this.webSocketOpened) {
        this.transport = "sse"; // a WebSocket that never opened here: SSE from now on
      }
      this.options.onError?.(new Error(`stream connection lost: ${ended.detail}`));
      const delayMs = backoffDelay(failures, this.options.backoff);
      failures += 1;
      this.setState("backing-off", { delayMs });
      await this.sleep(delayMs);
    }
    this.stopped = true;
    this.setState("closed", { close });
    this.resolveDone(close);
  }

  private async askForToken(code: number, detail: string): Promise<string | null | undefined> {
    if (!this.options.refreshToken) return null;
    try {
      return await this.options.refreshToken({ code, detail });
    } catch (error) {
      this.options.onError?.(error instanceof Error ? error : new Error(String(error)));
      return null;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private query(): URLSearchParams {
    const q = new URLSearchParams();
    for (const p of this.options.projectIds ?? []) q.append("projectId", p);
    if (this.options.types?.length) q.set("types", this.options.types.join(","));
    if (this.options.level) q.set("level", this.options.level);
    return q;
  }

  /** Deliver one parsed frame; remember its cursor. A `replay-complete` says the backlog
   * is over: its cursor is where this connection caught up to, and `replaying` turns
   * `live` (the frame is delivered first, so `onFrame` has seen the whole backlog). */
  private deliver(frame: Frame): void {
    if (frame.type === "replay-complete") {
      this.cursor = frame.payload.cursor;
      this.options.onFrame(frame);
      if (this.state === "replaying") this.setState("live");
      return;
    }
    if (frame.id !== null && frame.id !== undefined) this.cursor = frame.id;
    this.options.onFrame(frame);
  }

  /** The state a connection starts in, and its idle watchdog. */
  private activity(onIdle: () => void): { established(resumed: boolean): void; seen(): void; stop(): void } {
    const idleMs = this.options.idleTimeoutMs ?? 60_000;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const armIdle = (): void => {
      clearTimeout(idle);
      idle = setTimeout(onIdle, idleMs);
    };
    armIdle();
    return {
      // with a cursor the backlog comes first, until the gateway's replay-complete;
      // without one there is none
      established: (resumed) => this.setState(resumed ? "replaying" : "live"),
      seen: armIdle,
      stop: () => clearTimeout(idle),
    };
  }

  private async connectOnce(): Promise<Ended> {
    if (this.transport === "websocket") {
      const Ws = this.options.WebSocket ?? (await defaultWebSocket());
      if (Ws) return this.connectWebSocket(Ws);
      if ((this.options.transport ?? "auto") === "websocket") {
        return { kind: "bad-request", code: 0, detail: "no WebSocket implementation (install ws)" };
      }
      this.transport = "sse";
    }
    return this.connectSse();
  }

  private connectWebSocket(Ws: WebSocketConstructor): Promise<Ended> {
    return new Promise<Ended>((resolve) => {
      const q = this.query();
      q.set("token", this.token);
      if (this.cursor !== undefined) q.set("since", this.cursor);
      const url = `${this.options.baseUrl.replace(/^http/, "ws").replace(/\/+$/, "")}/ws/devteam?${q}`;
      let socket: WebSocketLike;
      try {
        socket = new Ws(url);
      } catch (error) {
        resolve({ kind: "lost", opened: false, detail: String(error) });
        return;
      }
      let opened = false;
      let established = false;
      let settled = false;
      let ping: ReturnType<typeof setInterval> | undefined;
      const watch = this.activity(() => {
        // a dead connection answers no close handshake: do not wait for one
        const dead = socket as WebSocketLike & { terminate?: () => void };
        try {
          if (dead.terminate) dead.terminate();
          else dead.close(4000, "idle");
        } catch {
          // already closing
        }
        finish({ kind: "lost", opened, detail: "no data within idleTimeoutMs" });
      });
      const finish = (ended: Ended): void => {
        if (settled) return;
        settled = true;
        watch.stop();
        clearInterval(ping);
        this.abort = undefined;
        resolve(ended);
      };
      this.abort = () => {
        try {
          socket.close(1000, "client closed");
        } catch {
          // already closing
        }
        finish({ kind: "stopped" });
      };
      socket.addEventListener("open", () => {
        opened = true;
        this.webSocketOpened = true;
        // a pong keeps a healthy connection from looking idle: the watchdog fires on a dead one
        const every = Math.min(20_000, Math.max(50, Math.floor((this.options.idleTimeoutMs ?? 60_000) / 3)));
        ping = setInterval(() => {
          try {
            socket.send('{"type":"ping"}');
          } catch {
            // closing
          }
        }, every);
      });
      socket.addEventListener("message", (event: { data: unknown }) => {
        watch.seen();
        if (typeof event.data !== "string") return;
        const frame = parseFrame(event.data);
        if (frame === null) return;
        if (frame.type === "connection-established") {
          established = true;
          watch.established(frame.payload.resumedFrom != null);
          this.options.onFrame(frame);
          return;
        }
        this.deliver(frame);
      });
      socket.addEventListener("error", () => {
        // the close event follows with the code
      });
      socket.addEventListener("close", (event: { code: number; reason: string }) => {
        const detail = `close ${event.code}${event.reason ? ` ${event.reason}` : ""}`;
        if (event.code === 4401) finish({ kind: "unauthorized", established, code: 4401, detail: event.reason });
        else if (event.code === 4403) finish({ kind: "forbidden", code: 4403, detail: event.reason });
        else if (event.code === 4400) finish({ kind: "bad-request", code: 4400, detail: event.reason });
        else finish({ kind: "lost", opened, detail });
      });
    });
  }

  private async connectSse(): Promise<Ended> {
    const controller = new AbortController();
    let stopped = false;
    this.abort = () => {
      stopped = true;
      controller.abort();
    };
    const q = this.query();
    const headers: Record<string, string> = {
      Accept: "text/event-stream",
      Authorization: `Bearer ${this.token}`,
    };
    if (this.cursor !== undefined) headers["Last-Event-ID"] = this.cursor;
    const url = `${this.options.baseUrl.replace(/\/+$/, "")}/api/devteam/stream?${q}`;
    const fetchImpl = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    let established = false;
    let expired: string | undefined;
    const watch = this.activity(() => controller.abort());
    try {
      const response = await fetchImpl(url, { headers, signal: controller.signal });
      if (response.status === 401 || response.status === 403 || response.status === 400) {
        const detail = await problemDetail(response);
        if (response.status === 401) return { kind: "unauthorized", established: false, code: 401, detail };
        if (response.status === 403) return { kind: "forbidden", code: 403, detail };
        return { kind: "bad-request", code: 400, detail };
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel();
        return { kind: "lost", opened: false, detail: `HTTP ${response.status}` };
      }
      const parser = new SseParser((event) => {
        const frame = parseFrame(event.data);
        if (frame === null) return;
        if (frame.type === "connection-established") {
          established = true;
          watch.established(frame.payload.resumedFrom != null);
          this.options.onFrame(frame);
          return;
        }
        if (frame.type === "error" && frame.id === null && frame.payload.message.startsWith(EXPIRED)) {
          expired = frame.payload.message; // the server ends the response next
        }
        this.deliver(frame);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watch.seen();
        parser.feed(value);
      }
      if (stopped) return { kind: "stopped" };
      if (expired !== undefined) return { kind: "unauthorized", established, code: 401, detail: expired };
      return { kind: "lost", opened: true, detail: "the event stream ended" };
    } catch (error) {
      if (stopped) return { kind: "stopped" };
      return { kind: "lost", opened: established, detail: String(error) };
    } finally {
      watch.stop();
      this.abort = undefined;
    }
  }
}

/** Open a live stream (shorthand for `new LiveStream(options).start()`). */
export function openStream(options: StreamOptions): LiveStream {
  return new LiveStream(options).start();
}

async function defaultWebSocket(): Promise<WebSocketConstructor | undefined> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  try {
    const name = "ws"; // not a static import: browsers and bundlers never need it
    const mod = (await import(name)) as { default?: WebSocketConstructor; WebSocket?: WebSocketConstructor };
    return mod.WebSocket ?? mod.default;
  } catch {
    return undefined;
  }
}

async function problemDetail(response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { detail?: unknown };
    return typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
