// Drift check: src/schema.d.ts must be exactly what openapi-typescript makes of openapi.json.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "schema-check-"));
try {
  const out = join(dir, "schema.d.ts");
  execFileSync(join(root, "node_modules", ".bin", "openapi-typescript"), ["openapi.json", "--output", out], {
    cwd: root,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const fresh = readFileSync(out, "utf8");
  const committed = readFileSync(join(root, "src", "schema.d.ts"), "utf8");
  if (fresh !== committed) {
    console.error("src/schema.d.ts differs from what openapi-typescript generates from openapi.json: run `npm run generate` and commit it");
    process.exit(1);
  }
  console.log("src/schema.d.ts matches openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
