// Bundle the /demo page: src/demo.tsx (React + the component + the client) -> dist/.
// dist/ is build output (gitignored); the app serves it at /demo (ui/demo_page.py).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const started = Date.now();

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "assets"), { recursive: true });
await build({
  entryPoints: [join(root, "src", "demo.tsx")],
  outdir: join(dist, "assets"),
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
await copyFile(join(root, "src", "index.html"), join(dist, "index.html"));
console.log(`>> built ui/web/dist in ${Date.now() - started} ms`);
