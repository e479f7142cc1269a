/**
 * Exponential backoff with full jitter: attempt n waits a uniformly random time in
 * [0, min(cap, base * 2^n)] (AWS's "full jitter"), so a crowd of clients spreads out.
 */
export interface BackoffOptions {
  /** First ceiling in ms (default 500). */
  baseMs?: number;
  /** Never wait longer than this (default 30,000 ms). */
  capMs?: number;
  /** Uniform [0, 1) source (default Math.random; tests pass their own). */
  random?: () => number;
}

export const DEFAULT_BASE_MS = 500;
export const DEFAULT_CAP_MS = 30_000;

/** The delay before reconnect attempt `attempt` (0 = the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? DEFAULT_BASE_MS;
  const cap = Math.min(options.capMs ?? DEFAULT_CAP_MS, DEFAULT_CAP_MS);
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor((options.random ?? Math.random)() * ceiling);
}
