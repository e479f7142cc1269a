// tsc does not emit .d.ts sources: copy the generated types beside the built index.d.ts.
import { copyFileSync } from "node:fs";

copyFileSync(new URL("../src/schema.d.ts", import.meta.url), new URL("../dist/schema.d.ts", import.meta.url));
