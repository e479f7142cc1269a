/** The pure parts: backoff with full jitter, capped at 30 s; the SSE parser. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, SseParser, type SseEvent } from "../src/index.js";

test("backoff: full jitter in [0, min(cap, base * 2^n)], never above 30 s", () => {
  const top = () => 0.999999;
  assert.equal(backoffDelay(0, { baseMs: 500, random: () => 0 }), 0);
  assert.equal(backoffDelay(0, { baseMs: 500, random: top }), 499);
  assert.equal(backoffDelay(3, { baseMs: 500, random: top }), 3999);
  assert.equal(backoffDelay(40, { baseMs: 500, random: top }), 29_999);
  // a cap asked above 30 s is still 30 s
  assert.equal(backoffDelay(40, { baseMs: 500, capMs: 600_000, random: top }), 29_999);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(5)));
  assert.ok(spread.size > 1, "no jitter");
});

test("SSE parser: event, data, id over split chunks, CRLF, comments, multi-line data", () => {
  const events: SseEvent[] = [];
  const parser = new SseParser((e) => events.push(e));
  for (const chunk of ["retry: 2000\nevent: connection-", "established\ndata: {}\n\n", ": ping\n\n",
    "id: 7\r\nevent: execution-log\r\ndata: a\r", "\ndata: b\r\n\r\n", "data: no-event\n\n"]) {
    parser.feed(chunk);
  }
  assert.deepEqual(events, [
    { event: "connection-established", data: "{}", id: undefined },
    { event: "execution-log", data: "a\nb", id: "7" },
    { event: "message", data: "no-event", id: undefined },
  ]);
  assert.equal(parser.retryMs, 2000);
});
