export * from "./errors.js";
export * from "./rest.js";
export * from "./frames.js";
export * from "./stream.js";
export { backoffDelay, DEFAULT_BASE_MS, DEFAULT_CAP_MS, type BackoffOptions } from "./backoff.js";
export { SseParser, type SseEvent } from "./sse.js";
export type { components, paths, operations } from "./schema.js";
