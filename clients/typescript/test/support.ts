/** What the Node tests share: the gateway under test, the hooks of the pytest harness
 * (which write to the gateway's database), a TCP proxy that can cut connections, waiting. */
import net from "node:net";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/integration/client/test_typescript_client.py`);
  return value;
}

export const GATEWAY_URL = required("DEVTEAM_GATEWAY_URL");
export const HOOKS_URL = required("DEVTEAM_TEST_HOOKS_URL");
/** alice, a developer of customer acme (`acme/*`), valid for an hour. */
export const TOKEN = required("DEVTEAM_TEST_TOKEN");

async function hook<T>(name: string, body: Record<string, unknown>): Promise<T> {
  const response = await fetch(`${HOOKS_URL}/${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = (await response.json()) as T & { error?: string };
  if (!response.ok) throw new Error(`hook ${name}: ${answer.error ?? response.status}`);
  return answer;
}

/** A started execution of `projectId`; its first frame (seq 1) is already written. */
export async function newExecution(projectId: string): Promise<string> {
  return (await hook<{ executionId: string }>("execution", { projectId })).executionId;
}

/** Append `n` execution-log frames to the execution (one transaction each). */
export async function writeFrames(executionId: string, n: number): Promise<void> {
  await hook("frames", { executionId, n });
}

/** Register a project (as initialize would have) so REST calls find it. */
export async function registerProject(projectId: string): Promise<void> {
  await hook("project", { projectId });
}

export async function mintToken(ttl: number, projects: string[] = ["acme/*"], role = "developer"): Promise<string> {
  return (await hook<{ token: string }>("token", { ttl, projects, role })).token;
}

/** What a stage run recorded (the gateway's usage fields; null where it does not apply). */
export interface RecordedUsage {
  tokensSent: number | null;
  tokensReceived: number | null;
  cost: number | null;
  cpuSeconds: number | null;
  peakMemoryBytes: number | null;
  wallSeconds: number | null;
  containers: number;
}

/** A finished stage run of the execution with this usage (as the pipeline records it). */
export async function recordStageRun(
  executionId: string,
  stage: string,
  attempt: number,
  usage: RecordedUsage,
  finishedAt: string,
): Promise<void> {
  await hook("stage-run", { executionId, stage, attempt, usage, finishedAt });
}

/** Wait until `condition()` holds; fails with `what` after `timeoutMs` (a guard, not a
 * measurement: nothing asserts how long it took). */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A TCP proxy in front of the gateway: counts connections, can cut every open one and
 * refuse new ones (a network outage as the client sees it). */
export class CuttingProxy {
  connections = 0;
  /** Every HTTP request line clients sent (`GET /ws/devteam?… HTTP/1.1`), keep-alive
   * connections' later requests included. */
  requests: string[] = [];
  refusing = false;
  private readonly open = new Set<net.Socket>();
  private readonly pairs: Array<[net.Socket, net.Socket]> = [];
  private server: net.Server | undefined;
  url = "";

  async start(): Promise<this> {
    const target = new URL(GATEWAY_URL);
    this.server = net.createServer((client) => {
      this.connections += 1;
      if (this.refusing) {
        client.destroy();
        return;
      }
      client.on("data", (chunk: Buffer) => {
        const line = chunk.toString("latin1", 0, 2048).split("\r\n", 1)[0] ?? "";
        if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) this.requests.push(line);
      });
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        a.on("error", () => b.destroy());
        a.on("close", () => b.destroy());
        a.pipe(b);
      }
      this.open.add(client).add(upstream);
      this.pairs.push([client, upstream]);
      client.on("close", () => this.open.delete(client));
      upstream.on("close", () => this.open.delete(upstream));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    const address = this.server.address() as net.AddressInfo;
    this.url = `http://127.0.0.1:${address.port}`;
    return this;
  }

  /** Cut every open connection (both directions, at once). */
  cut(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }

  /** Stop forwarding on every open connection without closing it: a half-open connection
   * (a NAT that forgot it, a sleeping laptop), where nothing arrives and nothing fails. */
  stall(): void {
    for (const [client, upstream] of this.pairs.splice(0)) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}
