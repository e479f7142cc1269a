/**
 * Errors the client throws. Every error answer of the gateway is RFC 9457 problem details
 * (`application/problem+json`); it becomes a {@link ProblemError}, or the subclass for its
 * status, so callers can `catch (e) { if (e instanceof ConflictProblem) ... }`.
 */
import type { components } from "./schema.js";

/** The problem body as the OpenAPI document describes it (extension fields included). */
export type ProblemBody = components["schemas"]["ProblemBody"];

/** One bad field of a validation problem. */
export interface FieldError {
  field: string;
  message: string;
}

/** Any error answer that is problem details. */
export class ProblemError extends Error {
  override readonly name: string = "ProblemError";
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  readonly instance: string;
  readonly correlationId: string;
  /** The bad fields (validation problems), else empty. */
  readonly errors: FieldError[];
  /** The whole body, extension fields (e.g. `currentStatus`) included. */
  readonly body: ProblemBody;
  /** `Retry-After` in seconds when the gateway sent one (429, 503). */
  readonly retryAfter: number | undefined;

  constructor(body: ProblemBody, retryAfter?: number) {
    super(`${body.status} ${body.title}: ${body.detail}`);
    this.status = body.status;
    this.type = body.type;
    this.title = body.title;
    this.detail = body.detail;
    this.instance = body.instance;
    this.correlationId = body.correlationId;
    this.errors = (body.errors ?? []).map((e) => ({
      field: String(e["field"] ?? ""),
      message: String(e["message"] ?? ""),
    }));
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** 400 or 422: the request was refused as invalid; `errors` names the fields. */
export class ValidationProblem extends ProblemError {
  override readonly name = "ValidationProblem";
}

/** 401: no token, a bad one or an expired one. */
export class UnauthorizedProblem extends ProblemError {
  override readonly name = "UnauthorizedProblem";
}

/** 403: the token does not grant this project or action. */
export class ForbiddenProblem extends ProblemError {
  override readonly name = "ForbiddenProblem";
}

/** 404: no such resource (or not visible to this token). */
export class NotFoundProblem extends ProblemError {
  override readonly name = "NotFoundProblem";
}

/** 409: not allowed in the current state (`currentStatus`, `validTransitions`), or the
 * same Idempotency-Key is still in flight. */
export class ConflictProblem extends ProblemError {
  override readonly name = "ConflictProblem";
  get currentStatus(): string | null | undefined {
    return this.body.currentStatus;
  }
  get validTransitions(): string[] {
    return this.body.validTransitions ?? [];
  }
}

/** 413: the body is over the gateway's limit. */
export class PayloadTooLargeProblem extends ProblemError {
  override readonly name = "PayloadTooLargeProblem";
}

/** 429: too many requests; see `retryAfter`. */
export class RateLimitedProblem extends ProblemError {
  override readonly name = "RateLimitedProblem";
}

/** 5xx: the gateway or a dependency failed; `correlationId` finds it in the logs. */
export class ServerProblem extends ProblemError {
  override readonly name = "ServerProblem";
}

/** An error answer that is not problem details (a proxy's HTML page, say). */
export class HttpError extends Error {
  override readonly name = "HttpError";
  constructor(
    readonly status: number,
    readonly contentType: string,
    /** The first 2,000 characters of the body. */
    readonly text: string,
  ) {
    super(`HTTP ${status} (${contentType || "no content type"})`);
  }
}

/** The problem subclass for a status. */
export function problemFor(body: ProblemBody, retryAfter?: number): ProblemError {
  const s = body.status;
  if (s === 400 || s === 422) return new ValidationProblem(body, retryAfter);
  if (s === 401) return new UnauthorizedProblem(body, retryAfter);
  if (s === 403) return new ForbiddenProblem(body, retryAfter);
  if (s === 404) return new NotFoundProblem(body, retryAfter);
  if (s === 409) return new ConflictProblem(body, retryAfter);
  if (s === 413) return new PayloadTooLargeProblem(body, retryAfter);
  if (s === 429) return new RateLimitedProblem(body, retryAfter);
  if (s >= 500) return new ServerProblem(body, retryAfter);
  return new ProblemError(body, retryAfter);
}

/** Whether a parsed JSON value has the required members of problem details. */
export function isProblemBody(value: unknown): value is ProblemBody {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v["status"] === "number" && typeof v["title"] === "string" &&
    typeof v["type"] === "string";
}
