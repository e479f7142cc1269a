// tsc does not emit .d.ts sources: copy the generated types beside the built index.d.ts.
import { copyFileSync } from "node:fs";

for (const name of ["schema.d.ts", "frames.schema.d.ts"]) {
  copyFileSync(new URL(`../src/${name}`, import.meta.url), new URL(`../dist/${name}`, import.meta.url));
}
