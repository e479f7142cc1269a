/**
 * REST calls of the gateway, typed from its OpenAPI document (`openapi.json`, generated into
 * `schema.d.ts` by openapi-typescript). Error answers throw {@link ProblemError} subclasses;
 * every write (POST, PUT) carries an `Idempotency-Key` (one the caller passes, so a retry
 * is a replay, or a fresh random one).
 */
import { HttpError, isProblemBody, problemFor } from "./errors.js";
import type { components, paths } from "./schema.js";

export type Schemas = components["schemas"];
type HttpMethod = "get" | "put" | "post" | "delete" | "patch";

/** The operation object of `method` on `path`. */
export type Operation<P extends keyof paths, M extends HttpMethod> =
  paths[P][M] extends infer O ? (O extends { responses: unknown } ? O : never) : never;

type JsonOf<R> = R extends { content: { "application/json": infer B } } ? B : never;
type SuccessCodes = 200 | 201 | 202;

/** The JSON body of the operation's success answer. */
export type SuccessBody<O> = O extends { responses: infer R }
  ? JsonOf<R[Extract<keyof R, SuccessCodes>]>
  : never;

/** The JSON request body of the operation. */
export type RequestBody<O> = O extends { requestBody?: { content: { "application/json": infer B } } }
  ? B
  : never;

/** The query parameters of the operation. */
export type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

export interface ClientOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8000`. */
  baseUrl: string;
  /** The bearer token, or a function returning it (called for every request). */
  token?: string | (() => string | Promise<string>);
  /** `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
  /** Makes Idempotency-Keys for writes without one (default: a random UUID). */
  newIdempotencyKey?: () => string;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Sent as `X-Correlation-Id` (the gateway generates one otherwise). */
  correlationId?: string;
}

export interface WriteOptions extends RequestOptions {
  /** Reuse the key of an earlier attempt to make a retry a replay, not a second action. */
  idempotencyKey?: string;
}

/** A success answer with its metadata. */
export interface Answer<T> {
  data: T;
  status: number;
  headers: Headers;
  /** The Idempotency-Key sent (writes only). */
  idempotencyKey: string | undefined;
  /** The gateway replayed a stored answer (`Idempotent-Replayed: true`). */
  replayed: boolean;
  correlationId: string | null;
}

/** A request for `send()`: the method, the path (already encoded), query and JSON body. */
export interface Call {
  method: "GET" | "POST" | "PUT";
  path: string;
  query?: Record<string, string | number | boolean | undefined> | undefined;
  body?: unknown;
  options?: WriteOptions | undefined;
}

type Op<P extends keyof paths, M extends HttpMethod> = Operation<P, M>;

/** The query of `usage()`: `from`, `to` (UTC days `YYYY-MM-DD`), `projectId`. */
export type UsageQuery = {
  [K in keyof QueryOf<Op<"/api/devteam/usage/{customer_id}", "get">>]?: NonNullable<
    QueryOf<Op<"/api/devteam/usage/{customer_id}", "get">>[K]
  >;
};

/** One path segment: percent-encoded, so `customer/project` is sent as `customer%2Fproject`
 * (the gateway accepts both). */
const seg = (value: string): string => encodeURIComponent(value);

export class DevTeamClient {
  readonly baseUrl: string;
  private readonly token: ClientOptions["token"];
  private readonly fetchImpl: typeof fetch;
  private readonly newKey: () => string;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.newKey = options.newIdempotencyKey ?? randomKey;
  }

  // ---- DevTeam Automation API ----------------------------------------------------------

  /** Start running a project's task list (202). */
  initialize(
    body: RequestBody<Op<"/api/devteam/automation/initialize", "post">>,
    options?: WriteOptions,
  ): Promise<Schemas["InitializeAccepted"]> {
    return this.data({ method: "POST", path: "/api/devteam/automation/initialize", body, options });
  }

  /** Where a project's execution is now (404 if it never ran). */
  status(projectId: string, options?: RequestOptions): Promise<Schemas["ExecutionStatus"]> {
    return this.data({ method: "GET", path: `/api/devteam/automation/status/${seg(projectId)}`, options });
  }

  pause(projectId: string, options?: WriteOptions): Promise<Schemas["TransitionAccepted"]> {
    return this.data({ method: "POST", path: `/api/devteam/automation/pause/${seg(projectId)}`, options });
  }

  resume(projectId: string, options?: WriteOptions): Promise<Schemas["TransitionAccepted"]> {
    return this.data({ method: "POST", path: `/api/devteam/automation/resume/${seg(projectId)}`, options });
  }

  stop(projectId: string, options?: WriteOptions): Promise<Schemas["TransitionAccepted"]> {
    return this.data({ method: "POST", path: `/api/devteam/automation/stop/${seg(projectId)}`, options });
  }

  validateRepository(
    body: RequestBody<Op<"/api/devteam/repository/validate", "post">>,
    options?: WriteOptions,
  ): Promise<Schemas["RepositoryValidation"]> {
    return this.data({ method: "POST", path: "/api/devteam/repository/validate", body, options });
  }

  listTasks(projectId: string, options?: RequestOptions): Promise<Schemas["TaskList"]> {
    return this.data({ method: "GET", path: `/api/devteam/repository/tasks/${projectPath(projectId)}`, options });
  }

  updateTask(
    projectId: string,
    taskId: string,
    body: RequestBody<Op<"/api/devteam/repository/tasks/{rest}", "put">>,
    options?: WriteOptions,
  ): Promise<Schemas["TaskDefinition"]> {
    return this.data({
      method: "PUT",
      path: `/api/devteam/repository/tasks/${projectPath(projectId)}/${seg(taskId)}`,
      body,
      options,
    });
  }

  injectTask(
    body: RequestBody<Op<"/api/devteam/tasks/inject", "post">>,
    options?: WriteOptions,
  ): Promise<Schemas["InjectAccepted"]> {
    return this.data({ method: "POST", path: "/api/devteam/tasks/inject", body, options });
  }

  readError(executionId: string, errorId: string, options?: RequestOptions): Promise<Schemas["ErrorView"]> {
    return this.data({ method: "GET", path: `/api/devteam/errors/${seg(executionId)}/${seg(errorId)}`, options });
  }

  activeExecutions(
    userId: string,
    options?: RequestOptions,
  ): Promise<SuccessBody<Op<"/api/devteam/executions/active/{user_id}", "get">>> {
    return this.data({ method: "GET", path: `/api/devteam/executions/active/${seg(userId)}`, options });
  }

  executionHistory(
    userId: string,
    query?: QueryOf<Op<"/api/devteam/executions/history/{user_id}", "get">>,
    options?: RequestOptions,
  ): Promise<SuccessBody<Op<"/api/devteam/executions/history/{user_id}", "get">>> {
    return this.data({ method: "GET", path: `/api/devteam/executions/history/${seg(userId)}`, query, options });
  }

  execution(executionId: string, options?: RequestOptions): Promise<Schemas["ExecutionDetail"]> {
    return this.data({ method: "GET", path: `/api/devteam/executions/${seg(executionId)}`, options });
  }

  // ---- Usage ------------------------------------------------------------------------------

  /** What a customer's executions consumed (the model's tokens and cost, the sandbox's CPU
   * seconds, peak memory and wall time): in total, per project and per UTC day. `from` and
   * `to` are UTC days `YYYY-MM-DD`, inclusive (default: the 30 days up to today, at most
   * 366); `projectId` narrows it to one project of the customer. An admin or a manager of
   * the customer only (else `ForbiddenProblem`); a malformed day is a 400, `from` after
   * `to` or a project of another customer a 422 (`ValidationProblem`, `errors` names the
   * field). */
  usage(customerId: string, query?: UsageQuery, options?: RequestOptions): Promise<Schemas["UsageReport"]> {
    return this.data({ method: "GET", path: `/api/devteam/usage/${seg(customerId)}`, query, options });
  }

  // ---- Event API ------------------------------------------------------------------------

  createEvent(
    body: RequestBody<Op<"/events", "post">>,
    options?: WriteOptions,
  ): Promise<Schemas["EventAccepted"]> {
    return this.data({ method: "POST", path: "/events", body, options });
  }

  event(eventId: string, options?: RequestOptions): Promise<Schemas["EventRecord"]> {
    return this.data({ method: "GET", path: `/events/${seg(eventId)}`, options });
  }

  // ---- Core runner API (one step, synchronously) ----------------------------------------

  health(options?: RequestOptions): Promise<Schemas["Health"]> {
    return this.data({ method: "GET", path: "/health", options });
  }

  prep(body: RequestBody<Op<"/prep", "post">>, options?: WriteOptions): Promise<Schemas["PrepResult"]> {
    return this.data({ method: "POST", path: "/prep", body, options });
  }

  implement(
    body: RequestBody<Op<"/implement", "post">>,
    options?: WriteOptions,
  ): Promise<Schemas["OperationArtifact"]> {
    return this.data({ method: "POST", path: "/implement", body, options });
  }

  verify(
    body: RequestBody<Op<"/verify", "post">>,
    options?: WriteOptions,
  ): Promise<Schemas["VerificationResult"]> {
    return this.data({ method: "POST", path: "/verify", body, options });
  }

  nextTask(projectId: string, options?: RequestOptions): Promise<Schemas["NextTask"]> {
    return this.data({ method: "GET", path: "/tasks/next", query: { projectId }, options });
  }

  // ---- the machinery ----------------------------------------------------------------------

  private async data<T>(call: Call): Promise<T> {
    return (await this.send<T>(call)).data;
  }

  /** Send one request; the success body with its metadata, or a thrown problem. */
  async send<T>(call: Call): Promise<Answer<T>> {
    const url = new URL(this.baseUrl + call.path);
    for (const [k, v] of Object.entries(call.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers = new Headers({ Accept: "application/json, application/problem+json" });
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const options = call.options ?? {};
    if (options.correlationId) headers.set("X-Correlation-Id", options.correlationId);
    let idempotencyKey: string | undefined;
    if (call.method !== "GET") {
      idempotencyKey = options.idempotencyKey ?? this.newKey();
      headers.set("Idempotency-Key", idempotencyKey);
    }
    let body: string | undefined;
    if (call.body !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(call.body);
    }
    const init: RequestInit = { method: call.method, headers };
    if (body !== undefined) init.body = body;
    if (options.signal) init.signal = options.signal;
    const response = await this.fetchImpl(url, init);
    const contentType = response.headers.get("content-type") ?? "";
    const text = await response.text();
    if (!response.ok) throw errorOf(response, contentType, text);
    let data: T;
    try {
      data = (text ? JSON.parse(text) : undefined) as T;
    } catch {
      throw new HttpError(response.status, contentType, text.slice(0, 2000));
    }
    return {
      data,
      status: response.status,
      headers: response.headers,
      idempotencyKey,
      replayed: response.headers.get("idempotent-replayed") === "true",
      correlationId: response.headers.get("x-correlation-id"),
    };
  }
}

/** A random UUID (Web Crypto where the runtime has it; Node 18 without the flag has not). */
function randomKey(): string {
  const webCrypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (webCrypto?.randomUUID) return webCrypto.randomUUID();
  const hex = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** `customer/project` as two path segments (the tasks routes take `{project}/{taskId}`). */
function projectPath(projectId: string): string {
  return projectId.split("/").map(seg).join("/");
}

function errorOf(response: Response, contentType: string, text: string): Error {
  const retry = response.headers.get("retry-after");
  const retryAfter = retry !== null && /^\d+$/.test(retry) ? Number(retry) : undefined;
  if (/json/i.test(contentType)) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (isProblemBody(parsed)) return problemFor(parsed, retryAfter);
    } catch {
      // not JSON after all: an HttpError below
    }
  }
  return new HttpError(response.status, contentType, text.slice(0, 2000));
}
