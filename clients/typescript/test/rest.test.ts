/** REST calls against the real gateway: problem+json as typed exceptions, Idempotency-Key
 * on writes (a retry with the same key is a replay). */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConflictProblem,
  DevTeamClient,
  ForbiddenProblem,
  NotFoundProblem,
  ProblemError,
  ValidationProblem,
  type Schemas,
} from "../src/index.js";
import {
  GATEWAY_URL,
  TOKEN,
  mintToken,
  newExecution,
  recordStageRun,
  registerProject,
  type RecordedUsage,
} from "./support.js";

interface Seen {
  method: string;
  url: string;
  idempotencyKey: string | null;
  replayed: string | null;
}

/** A client whose fetch records what was sent and answered. */
function recordingClient(): { client: DevTeamClient; seen: Seen[] } {
  const seen: Seen[] = [];
  const client = new DevTeamClient({
    baseUrl: GATEWAY_URL,
    token: () => TOKEN,
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      seen.push({
        method: init?.method ?? "GET",
        url: String(input),
        idempotencyKey: new Headers(init?.headers).get("idempotency-key"),
        replayed: response.headers.get("idempotent-replayed"),
      });
      return response;
    },
  });
  return { client, seen };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the call to throw");
}

test("404 is a NotFoundProblem with the problem's fields", async () => {
  const { client } = recordingClient();
  const error = await rejection(client.status("acme/never-ran"));
  assert.ok(error instanceof NotFoundProblem, String(error));
  assert.ok(error instanceof ProblemError);
  assert.equal(error.status, 404);
  assert.ok(error.correlationId.length > 0);
  assert.ok(error.detail.length > 0);
});

test("an invalid body is a ValidationProblem naming the field", async () => {
  const { client } = recordingClient();
  // a field the contract does not have (the types would refuse it: cast to send it anyway)
  const body = { projectId: "acme/web", colour: "blue" } as unknown as Parameters<DevTeamClient["initialize"]>[0];
  const error = await rejection(client.initialize(body));
  assert.ok(error instanceof ValidationProblem, String(error));
  assert.equal(error.status, 400);
  assert.ok(error.errors.some((e) => e.field.includes("colour")), JSON.stringify(error.errors));
});

test("writes carry an Idempotency-Key: the same key replays, another is a 409, a changed body 422", async () => {
  const project = "acme/rest-idempotency";
  await registerProject(project);
  const { client, seen } = recordingClient();
  const key = `node-test-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  // Given an initialize sent with a key
  const first = await client.initialize({ projectId: project }, { idempotencyKey: key });
  // When it is retried with the same key, it is the stored answer replayed
  const again = await client.initialize({ projectId: project }, { idempotencyKey: key });
  assert.deepEqual(again, first);
  assert.equal(seen.at(-1)?.replayed, "true");
  // A call without a key gets a fresh one: a second initialize, refused as the project runs
  const conflict = await rejection(client.initialize({ projectId: project }));
  assert.ok(conflict instanceof ConflictProblem, String(conflict));
  assert.equal(conflict.status, 409);
  assert.ok(conflict.currentStatus, JSON.stringify(conflict.body));
  const generated = seen.at(-1)?.idempotencyKey;
  assert.ok(generated && generated !== key);
  // The same key with another body is 422
  const changed = await rejection(client.initialize({ projectId: project, stopPoint: "1.1" }, { idempotencyKey: key }));
  assert.ok(changed instanceof ValidationProblem, String(changed));
  assert.equal(changed.status, 422);
  // Reads carry no key
  await client.status(project);
  assert.equal(seen.at(-1)?.method, "GET");
  assert.equal(seen.at(-1)?.idempotencyKey, null);
  assert.ok(seen.filter((s) => s.method === "POST").every((s) => s.idempotencyKey));
});

test("usage: a manager reads a customer's totals per project and day, typed; others are refused", async () => {
  // Given a customer whose two projects ran on 1 and 2 March (and another customer's run)
  const customer = `usage${Date.now().toString(36)}`;
  const web = await newExecution(`${customer}/web`);
  const api = await newExecution(`${customer}/api`);
  const other = await newExecution("acme/usage-other");
  const model: RecordedUsage = {
    tokensSent: 400, tokensReceived: 120, cost: 0.007,
    cpuSeconds: null, peakMemoryBytes: null, wallSeconds: null, containers: 0,
  };
  const box = (cpuSeconds: number, peakMemoryBytes: number, wallSeconds: number): RecordedUsage => ({
    tokensSent: null, tokensReceived: null, cost: null, cpuSeconds, peakMemoryBytes, wallSeconds, containers: 1,
  });
  await recordStageRun(web, "IMPLEMENT", 1, model, "2026-03-01T12:00:00+00:00");
  await recordStageRun(web, "VERIFY", 1, box(1.5, 50_000_000, 5), "2026-03-01T12:05:00+00:00");
  await recordStageRun(web, "VERIFY", 2, box(0.5, 70_000_000, 4), "2026-03-02T23:59:59+00:00");
  await recordStageRun(api, "IMPLEMENT", 1, model, "2026-03-02T08:00:00+00:00");
  await recordStageRun(other, "IMPLEMENT", 1, { ...model, tokensSent: 99_999 }, "2026-03-02T08:00:00+00:00");
  const manager = new DevTeamClient({ baseUrl: GATEWAY_URL, token: await mintToken(3600, [`${customer}/*`], "manager") });

  // When a manager of the customer asks for those two days
  const report: Schemas["UsageReport"] = await manager.usage(customer, { from: "2026-03-01", to: "2026-03-02" });
  // Then the totals, each project and each day are the recorded usage, nothing of others
  assert.equal(report.customerId, customer);
  assert.equal(report.from, "2026-03-01");
  assert.equal(report.to, "2026-03-02");
  assert.deepEqual(report.totals, {
    tokensSent: 800, tokensReceived: 240, cost: 0.014, cpuSeconds: 2, peakMemoryBytes: 70_000_000,
    wallSeconds: 9, implementRounds: 2, containers: 2,
  });
  assert.deepEqual(report.projects.map((p) => p.projectId), [`${customer}/api`, `${customer}/web`]);
  const webReport = report.projects[1]!;
  assert.deepEqual(webReport.days.map((d) => [d.date, d.tokensSent, d.cpuSeconds]), [
    ["2026-03-01", 400, 1.5],
    ["2026-03-02", null, 0.5],
  ]);
  // projectId narrows it to one project
  const one = await manager.usage(customer, { from: "2026-03-01", to: "2026-03-02", projectId: `${customer}/api` });
  assert.deepEqual(one.projects.map((p) => p.projectId), [`${customer}/api`]);
  assert.equal(one.totals.tokensSent, 400);
  // a day without usage in range: an empty report, not an error
  const empty = await manager.usage(customer, { from: "2026-02-01", to: "2026-02-02" });
  assert.deepEqual(empty.projects, []);

  // A developer (usage is money, not code) and a manager of another customer: 403
  const developer = new DevTeamClient({ baseUrl: GATEWAY_URL, token: TOKEN });
  const refused = await rejection(developer.usage(customer));
  assert.ok(refused instanceof ForbiddenProblem, String(refused));
  const stranger = new DevTeamClient({ baseUrl: GATEWAY_URL, token: await mintToken(3600, ["acme/*"], "manager") });
  assert.ok((await rejection(stranger.usage(customer))) instanceof ForbiddenProblem);
  // from after to: 422 naming the field; a malformed day: 400 naming it
  const backwards = await rejection(manager.usage(customer, { from: "2026-03-02", to: "2026-03-01" }));
  assert.ok(backwards instanceof ValidationProblem, String(backwards));
  assert.equal(backwards.status, 422);
  assert.deepEqual(backwards.errors.map((e) => e.field), ["to"]);
  const malformed = await rejection(manager.usage(customer, { from: "2026-3-1" }));
  assert.ok(malformed instanceof ValidationProblem, String(malformed));
  assert.equal(malformed.status, 400);
  // a project of another customer: 422 on projectId
  const foreign = await rejection(manager.usage(customer, { projectId: "acme/web" }));
  assert.ok(foreign instanceof ValidationProblem, String(foreign));
  assert.equal(foreign.status, 422);
  assert.deepEqual(foreign.errors.map((e) => e.field), ["projectId"]);
});
