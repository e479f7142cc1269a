/** The live-stream client against the real gateway: gapless replay after a forced
 * disconnect, no reconnect loop on 4403 / refused tokens, resume after a token refresh,
 * fallback to SSE, on both transports. */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { WebSocket as NodeWebSocket } from "ws";

import {
  openStream,
  type ConnectionState,
  type Frame,
  type LiveStream,
  type StreamOptions,
  type TokenRefreshContext,
  type Transport,
  type WebSocketConstructor,
} from "../src/index.js";
import { CuttingProxy, GATEWAY_URL, TOKEN, mintToken, newExecution, waitFor, writeFrames } from "./support.js";

/** `ws` as the WebSocket (Node 20 has no global one without a flag). */
const WS = NodeWebSocket as unknown as WebSocketConstructor;

interface Watched {
  stream: LiveStream;
  frames: Frame[];
  states: ConnectionState[];
  /** seq of every frame of `executionId` received, in order. */
  seqs(executionId: string): number[];
}

/** Every stream a test opened: closed after each test, so a failing one cannot leave a
 * reconnecting client behind that keeps the process alive. */
const opened: LiveStream[] = [];

function watch(options: Omit<StreamOptions, "onFrame" | "onState">): Watched {
  const frames: Frame[] = [];
  const states: ConnectionState[] = [];
  const stream = openStream({
    WebSocket: WS,
    backoff: { baseMs: 20, capMs: 200 },
    ...options,
    onFrame: (frame) => frames.push(frame),
    onState: (state) => states.push(state),
  });
  opened.push(stream);
  return {
    stream,
    frames,
    states,
    seqs: (executionId) =>
      frames.filter((f) => f.executionId === executionId && f.seq !== null).map((f) => f.seq as number),
  };
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const has = (w: Watched, executionId: string, seq: number) => () => w.seqs(executionId).includes(seq);

let proxy: CuttingProxy;
before(async () => {
  proxy = await new CuttingProxy().start();
});
afterEach(() => {
  for (const stream of opened.splice(0)) stream.close();
});
after(async () => {
  await proxy.stop();
});

for (const transport of ["websocket", "sse"] as const satisfies readonly Transport[]) {
  describe(`over ${transport}`, () => {
    test("replay after a forced disconnect is gapless: no missing, no duplicated cursor", async () => {
      // Given a client watching a project from its first frame, through a proxy
      const project = `acme/gap-${transport}`;
      const execution = await newExecution(project);
      const w = watch({ baseUrl: proxy.url, token: TOKEN, projectIds: [project], since: "0", transport });
      await waitFor("seq 1 and live", () => has(w, execution, 1)() && w.stream.state === "live");
      await writeFrames(execution, 3);
      await waitFor("seq 4", has(w, execution, 4));
      const cursorBefore = w.stream.cursor;
      // When the network drops every connection and refuses new ones while 5 frames are written
      proxy.refusing = true;
      const attemptsBefore = w.stream.attempts;
      proxy.cut();
      await waitFor("a refused reconnect attempt", () => w.stream.attempts >= attemptsBefore + 2);
      await writeFrames(execution, 5);
      proxy.refusing = false;
      // Then the client resumes from its cursor: the 5 are replayed, then live frames follow
      await waitFor("seq 9", has(w, execution, 9));
      await writeFrames(execution, 2);
      await waitFor("seq 11", has(w, execution, 11));
      w.stream.close();
      const closed = await w.stream.done;
      assert.deepEqual(w.seqs(execution), range(1, 11));
      const ids = w.frames.filter((f) => f.executionId === execution).map((f) => f.id);
      assert.equal(new Set(ids).size, ids.length, "a cursor was delivered twice");
      const established = w.frames.filter((f) => f.type === "connection-established");
      const resumed = established.at(-1);
      assert.ok(resumed?.type === "connection-established");
      assert.equal(resumed.payload.resumedFrom, cursorBefore);
      assert.equal(w.stream.transport, transport);
      assert.ok(w.states.includes("backing-off") && w.states.includes("replaying"), w.states.join(","));
      assert.equal(w.states.at(-1), "closed");
      assert.equal(closed.reason, "client");
    });

    test("replaying turns live exactly at the gateway's replay-complete, after the whole backlog", async () => {
      // Given 31 stored frames (seq 1 is the start) and a client resuming from the beginning
      const project = `acme/marker-${transport}`;
      const execution = await newExecution(project);
      await writeFrames(execution, 30);
      const frames: Frame[] = [];
      const states: Array<[ConnectionState, number, string | undefined]> = [];
      const stream = openStream({
        WebSocket: WS,
        baseUrl: GATEWAY_URL,
        token: TOKEN,
        projectIds: [project],
        since: "0",
        transport,
        onFrame: (frame) => frames.push(frame),
        // what had been delivered when each state began
        onState: (state, info) => states.push([state, frames.length, info.cursor]),
      });
      opened.push(stream);
      await waitFor("live", () => stream.state === "live");
      // When two frames are written after it went live
      await writeFrames(execution, 2);
      await waitFor("seq 33", () => frames.some((f) => f.executionId === execution && f.seq === 33));
      stream.close();
      await stream.done;
      // Then it was replaying until the marker and live from it on, once
      assert.deepEqual(states.map(([state]) => state), ["connecting", "replaying", "live", "closed"]);
      const [, deliveredWhenLive, cursorWhenLive] = states[2]!;
      const backlog = frames.slice(0, deliveredWhenLive);
      assert.equal(backlog[0]?.type, "connection-established");
      const marker = backlog.at(-1);
      assert.ok(marker?.type === "replay-complete", JSON.stringify(marker));
      const data = backlog.filter((f) => f.executionId === execution);
      assert.deepEqual(data.map((f) => f.seq), range(1, 31));
      assert.equal(backlog.length, 1 + 31 + 1);
      assert.equal(marker.payload.replayed, 31);
      assert.equal(marker.projectId, project);
      assert.equal(cursorWhenLive, marker.payload.cursor);
      assert.ok(BigInt(marker.payload.cursor) >= BigInt(data.at(-1)!.id as string));
      // the live frames came after it, and no second marker
      const rest = frames.slice(deliveredWhenLive);
      assert.deepEqual(rest.filter((f) => f.executionId === execution).map((f) => f.seq), [32, 33]);
      assert.equal(frames.filter((f) => f.type === "replay-complete").length, 1);
    });

    test("without a cursor it is live at once and resumes from the marker's cursor, gapless", async () => {
      // Given a client that starts from now on a project with history it does not want
      const project = `acme/fresh-${transport}`;
      const execution = await newExecution(project);
      await writeFrames(execution, 2);
      const w = watch({ baseUrl: proxy.url, token: TOKEN, projectIds: [project], transport });
      await waitFor("the marker", () => w.frames.some((f) => f.type === "replay-complete"));
      const marker = w.frames.find((f) => f.type === "replay-complete");
      assert.ok(marker?.type === "replay-complete");
      assert.equal(marker.payload.replayed, 0);
      // it has seen no data frame, yet it knows where it stands
      assert.equal(w.stream.cursor, marker.payload.cursor);
      assert.deepEqual(w.states, ["connecting", "live"]);
      // When the network drops it before any data frame and 2 frames are written meanwhile
      proxy.refusing = true;
      const attemptsBefore = w.stream.attempts;
      proxy.cut();
      await waitFor("a refused reconnect attempt", () => w.stream.attempts >= attemptsBefore + 2);
      await writeFrames(execution, 2);
      proxy.refusing = false;
      // Then it resumes from the marker's cursor: those 2 arrive, the history before does not
      await waitFor("seq 5", has(w, execution, 5));
      w.stream.close();
      await w.stream.done;
      assert.deepEqual(w.seqs(execution), [4, 5]);
      const resumed = w.frames.filter((f) => f.type === "connection-established").at(-1);
      assert.ok(resumed?.type === "connection-established");
      assert.equal(resumed.payload.resumedFrom, marker.payload.cursor);
      assert.ok(w.states.includes("replaying"), w.states.join(","));
    });

    test("4403 (project not granted) stops at once: one connection attempt, no loop", async () => {
      const before = proxy.requests.length;
      const w = watch({ baseUrl: proxy.url, token: TOKEN, projectIds: ["globex/api"], transport });
      const closed = await w.stream.done;
      assert.equal(closed.reason, "forbidden");
      assert.equal(closed.code, transport === "websocket" ? 4403 : 403);
      assert.equal(w.stream.attempts, 1);
      const sent = proxy.requests.slice(before);
      assert.equal(sent.length, 1, sent.join("\n"));
      assert.match(sent[0]!, transport === "websocket" ? /^GET \/ws\/devteam\?/ : /^GET \/api\/devteam\/stream\?/);
      assert.deepEqual(w.states, ["connecting", "closed"]);
    });

    test("4400 (a cursor that is not ASCII digits) stops at once: fix the query, no retry", async () => {
      const w = watch({ baseUrl: GATEWAY_URL, token: TOKEN, projectIds: ["acme/web"], since: "\u00b2", transport });
      const closed = await w.stream.done;
      assert.equal(closed.reason, "bad-request");
      assert.equal(closed.code, transport === "websocket" ? 4400 : 400);
      assert.equal(w.stream.attempts, 1);
    });

    test("a token refresh after 4401 (token expired) resumes from the cursor, gapless", async () => {
      // Given a client on a token that expires in 3 s (the gateway runs without leeway)
      const project = `acme/refresh-${transport}`;
      const execution = await newExecution(project);
      const short = await mintToken(3);
      const asked: TokenRefreshContext[] = [];
      const w = watch({
        baseUrl: GATEWAY_URL,
        token: short,
        projectIds: [project],
        since: "0",
        transport,
        refreshToken: async (context) => {
          asked.push(context);
          await writeFrames(execution, 3); // written while the client has no connection
          return mintToken(3600);
        },
      });
      await waitFor("seq 1", has(w, execution, 1));
      await writeFrames(execution, 2);
      await waitFor("seq 3", has(w, execution, 3));
      // When the gateway ends the stream on expiry, the client asks for a token and resumes
      await waitFor("the refresh", () => asked.length === 1, 30_000);
      await waitFor("seq 6 (written during the refresh)", has(w, execution, 6));
      await writeFrames(execution, 2);
      await waitFor("seq 8", has(w, execution, 8));
      w.stream.close();
      await w.stream.done;
      // Then nothing was missed or repeated, and it took one refresh and one reconnect
      assert.deepEqual(w.seqs(execution), range(1, 8));
      assert.equal(asked.length, 1);
      assert.equal(asked[0]!.code, transport === "websocket" ? 4401 : 401);
      assert.match(asked[0]!.detail, /token expired/);
      assert.equal(w.stream.attempts, 2);
      assert.ok(!w.states.includes("backing-off"), w.states.join(","));
    });

    test("4401 without a refresh callback stops; a refreshed token refused at once stops", async () => {
      const plain = watch({ baseUrl: proxy.url, token: "not-a-jwt", transport });
      const closed = await plain.stream.done;
      assert.equal(closed.reason, "unauthorized");
      assert.equal(plain.stream.attempts, 1);

      let asked = 0;
      const refused = watch({
        baseUrl: proxy.url,
        token: "not-a-jwt",
        transport,
        refreshToken: () => {
          asked += 1;
          return "still-not-a-jwt";
        },
      });
      const closedAgain = await refused.stream.done;
      assert.equal(closedAgain.reason, "unauthorized");
      assert.equal(asked, 1);
      assert.equal(refused.stream.attempts, 2);
      assert.ok(!refused.states.includes("backing-off"), refused.states.join(","));
    });
  });
}

test("auto: a WebSocket that cannot open falls back to SSE and streams gaplessly", async () => {
  // Given a WebSocket whose upgrade the server refuses (as a proxy that strips it would)
  class Blocked extends NodeWebSocket {
    constructor(url: string) {
      super(url.replace("/ws/devteam", "/ws/no-such-socket"));
    }
  }
  const project = "acme/fallback";
  const execution = await newExecution(project);
  const w = watch({
    baseUrl: GATEWAY_URL,
    token: TOKEN,
    projectIds: [project],
    since: "0",
    WebSocket: Blocked as unknown as WebSocketConstructor,
  });
  await waitFor("seq 1", has(w, execution, 1));
  await writeFrames(execution, 3);
  await waitFor("seq 4", has(w, execution, 4));
  w.stream.close();
  await w.stream.done;
  assert.equal(w.stream.transport, "sse");
  assert.equal(w.stream.attempts, 2);
  assert.deepEqual(w.seqs(execution), range(1, 4));
  assert.deepEqual(w.states.slice(0, 3), ["connecting", "backing-off", "connecting"]);
});

test("a connection that stalls (nothing arrives, nothing fails) is dropped and resumed, gapless", async () => {
  // Given a WebSocket client with a short idle timeout (it pings every third of it)
  const project = "acme/stalled";
  const execution = await newExecution(project);
  const w = watch({ baseUrl: proxy.url, token: TOKEN, projectIds: [project], since: "0", idleTimeoutMs: 600 });
  await waitFor("seq 1", has(w, execution, 1));
  const attempts = w.stream.attempts;
  // When the network silently stops carrying the connection while frames are written
  proxy.stall();
  await writeFrames(execution, 3);
  // Then the client notices, reconnects and gets what it missed
  await waitFor("seq 4", has(w, execution, 4));
  await writeFrames(execution, 1);
  await waitFor("seq 5", has(w, execution, 5));
  w.stream.close();
  await w.stream.done;
  assert.ok(w.stream.attempts > attempts);
  assert.deepEqual(w.seqs(execution), range(1, 5));
});

test("frames are typed by `type`: execution-log frames carry their lines", async () => {
  const project = "acme/typed";
  const execution = await newExecution(project);
  const w = watch({ baseUrl: GATEWAY_URL, token: TOKEN, projectIds: [project], since: "0" });
  await writeFrames(execution, 1);
  await waitFor("seq 2", has(w, execution, 2));
  w.stream.close();
  await w.stream.done;
  const lines: string[] = [];
  for (const frame of w.frames) {
    switch (frame.type) {
      case "execution-log":
        lines.push(...frame.payload.lines); // typed: payload.lines is string[]
        break;
      case "execution-update":
        assert.equal(typeof frame.payload.status, "string");
        break;
      default:
        break;
    }
  }
  assert.deepEqual(lines, ["line 0"]);
});
