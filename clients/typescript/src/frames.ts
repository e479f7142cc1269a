/**
 * The live stream's frames (CONTRACTS.md "Live stream"; the gateway's `FrameOut`): one
 * envelope, a discriminated union on `type`.
 */

/** The fields every frame has. `id` is the opaque resume cursor (null on control frames). */
export interface Envelope {
  id: string | null;
  ts: string;
  /** The same instant as `ts`, under the requirements' name. */
  timestamp: string;
  customerId: string | null;
  projectId: string | null;
  executionId: string | null;
  taskId: string | null;
  /** Per-execution sequence number (null on control frames). */
  seq: number | null;
}

/** The requirements' execution state carried at the top level of `execution-update`. */
export type PrdStatus =
  | "SELECTING"
  | "PREPARING"
  | "SETTING_UP"
  | "IMPLEMENTING"
  | "VERIFYING"
  | "MERGING"
  | "PUSHING"
  | "UPDATING_TASKLIST"
  | "PAUSED"
  | "STOPPING"
  | "STOPPED"
  | "COMPLETED"
  | "ERROR"
  | (string & {});

export type LifecycleStatus =
  | "idle"
  | "initializing"
  | "running"
  | "paused"
  | "stopping"
  | "stopped"
  | "completed"
  | "error";

export interface ExecutionUpdateFrame extends Envelope {
  type: "execution-update";
  id: string;
  executionId: string;
  seq: number;
  /** The requirements' state (e.g. `IMPLEMENTING`). */
  status?: PrdStatus;
  /** 0–100, one decimal. */
  progress?: number;
  payload: {
    status: LifecycleStatus;
    stage: string | null;
    taskId: string | null;
    progress: number;
    branch: string | null;
    pauseReason?: "user" | "stop_point" | "human_review" | null;
    [extra: string]: unknown;
  };
}

export interface ExecutionLogFrame extends Envelope {
  type: "execution-log";
  id: string;
  executionId: string;
  seq: number;
  payload: {
    level: "debug" | "info" | "warning" | "error";
    stage: string | null;
    taskId: string | null;
    lines: string[];
    [extra: string]: unknown;
  };
}

/** An execution's error (stored, has a cursor) or a control error (`id` null: a bad client
 * frame, an expired token on SSE). */
export interface ErrorFrame extends Envelope {
  type: "error";
  payload: {
    errorId?: string;
    stage?: string | null;
    classification: string;
    message: string;
    [extra: string]: unknown;
  };
}

export interface CompletionFrame extends Envelope {
  type: "completion";
  id: string;
  executionId: string;
  seq: number;
  payload: {
    status: LifecycleStatus;
    completedTasks: number;
    totalTasks: number;
    durationMs: number;
    [extra: string]: unknown;
  };
}

export interface ConnectionEstablishedFrame extends Envelope {
  type: "connection-established";
  id: null;
  payload: { connectionId: string; resumedFrom?: string };
}

/** The server dropped frames for a slow client; the client resumes from its last cursor. */
export interface ResyncFrame extends Envelope {
  type: "resync";
  id: null;
  payload: { since: string; reason: string; [extra: string]: unknown };
}

export interface PongFrame extends Envelope {
  type: "pong";
  id: null;
  payload: Record<string, never>;
}

/** Any frame of the stream; switch on `type`. */
export type Frame =
  | ExecutionUpdateFrame
  | ExecutionLogFrame
  | ErrorFrame
  | CompletionFrame
  | ConnectionEstablishedFrame
  | ResyncFrame
  | PongFrame;

/** The frames stored in the stream (they carry a resume cursor). */
export type DataFrame = ExecutionUpdateFrame | ExecutionLogFrame | ErrorFrame | CompletionFrame;

export type FrameType = Frame["type"];

const KNOWN: ReadonlySet<string> = new Set<FrameType>([
  "execution-update",
  "execution-log",
  "error",
  "completion",
  "connection-established",
  "resync",
  "pong",
]);

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
  if (typeof type !== "string" || !KNOWN.has(type)) return null;
  return value as Frame;
}
