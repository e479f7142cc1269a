/** REST calls against the real gateway: problem+json as typed exceptions, Idempotency-Key
 * on writes (a retry with the same key is a replay). */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConflictProblem,
  DevTeamClient,
  NotFoundProblem,
  ProblemError,
  ValidationProblem,
} from "../src/index.js";
import { GATEWAY_URL, TOKEN, registerProject } from "./support.js";

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
