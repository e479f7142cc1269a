/**
 * The live stream's frames: a discriminated union on `type`. Each frame type is generated
 * (`src/frames.schema.d.ts`, by `npm run generate:types`) from `asyncapi.json`, the
 * AsyncAPI document the gateway builds from the msgspec types it sends with, so these
 * types cannot drift from the wire.
 */
import type { components } from "./frames.schema.js";

type S = components["schemas"];

/** A stored `execution-update`: the requirements' `status` and `progress` at the top level,
 * the execution row in `payload`. */
export type ExecutionUpdateFrame = S["ExecutionUpdateFrame"];
/** A batch of a stage's output lines. */
export type ExecutionLogFrame = S["ExecutionLogFrame"];
/** An execution's error record (stored: it has a cursor). */
export type ExecutionErrorFrame = S["ExecutionErrorFrame"];
/** The execution ended: its last frame. */
export type CompletionFrame = S["CompletionFrame"];
/** The first frame of every connection. */
export type ConnectionEstablishedFrame = S["ConnectionEstablishedFrame"];
/** The server dropped frames for a slow client (or retention pruned them); the ones after
 * `payload.since` follow by themselves. */
export type ResyncFrame = S["ResyncFrame"];
/** A problem of the connection, not stored (`id` null): a bad client frame, an expired
 * token on SSE. */
export type StreamErrorFrame = S["StreamErrorFrame"];
export type PongFrame = S["PongFrame"];
/** The backlog is over (once per connection, with or without a cursor): every stored frame
 * up to `payload.cursor` has been sent, every frame after it is live. */
export type ReplayCompleteFrame = S["ReplayCompleteFrame"];
/** The frame a client may send (answered by `pong`). */
export type PingFrame = S["PingFrame"];

/** Both kinds of `type: "error"`; `id === null` tells the connection's from the execution's. */
export type ErrorFrame = ExecutionErrorFrame | StreamErrorFrame;

/** Any frame of the stream; switch on `type`. */
export type Frame =
  | ExecutionUpdateFrame
  | ExecutionLogFrame
  | ExecutionErrorFrame
  | CompletionFrame
  | ConnectionEstablishedFrame
  | ResyncFrame
  | StreamErrorFrame
  | PongFrame
  | ReplayCompleteFrame;

/** The frames stored in the stream (they carry a resume cursor in `id`). */
export type DataFrame = ExecutionUpdateFrame | ExecutionLogFrame | ExecutionErrorFrame | CompletionFrame;

export type FrameType = Frame["type"];
/** The requirements' execution state (`IMPLEMENTING`, …). */
export type PrdStatus = ExecutionUpdateFrame["status"];
/** The lifecycle status (`running`, …). */
export type LifecycleStatus = S["Status"];
export type Stage = S["Stage"];
export type Classification = S["Classification"];

const KNOWN: { readonly [K in FrameType]: true } = {
  "execution-update": true,
  "execution-log": true,
  error: true,
  completion: true,
  "connection-established": true,
  resync: true,
  pong: true,
  "replay-complete": true,
};

/** The frame types the client knows (every one the gateway sends). */
export const FRAME_TYPES = Object.keys(KNOWN) as FrameType[];

/** Parse one frame's JSON; null when it is not a frame of a known type. */
export function parseFrame(text: string): Frame | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string" || !Object.hasOwn(KNOWN, type)) return null;
  return value as Frame;
}
