// Build ../static/vendor/uppy.js and uppy.css from the locked npm packages, then
// record each output's sha256 and the packages' versions in MANIFEST.json.
// The same package-lock.json gives the same bytes: no timestamps, no absolute paths.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "vendor");
mkdirSync(out, { recursive: true });

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
  target: ["es2020"],
};
await esbuild.build({ ...common, entryPoints: ["src/uppy.js"], outfile: join(out, "uppy.js"), format: "esm" });
await esbuild.build({ ...common, entryPoints: ["src/uppy.css"], outfile: join(out, "uppy.css") });

const lock = JSON.parse(readFileSync(join(here, "package-lock.json"), "utf8"));
const manifest = {
  built_by: "examples/frontend: npm ci && npm run build",
  packages: Object.fromEntries(
    Object.entries(lock.packages)
      .filter(([path]) => path.startsWith("node_modules/") && !lock.packages[path].dev)
      .map(([path, info]) => [path.slice("node_modules/".length), info.version])
      .sort(([a], [b]) => a.localeCompare(b)),
  ),
  files: Object.fromEntries(
    ["uppy.js", "uppy.css"].map((name) => [
      name,
      createHash("sha256").update(readFileSync(join(out, name))).digest("hex"),
    ]),
  ),
};
writeFileSync(join(out, "MANIFEST.json"), JSON.stringify(manifest, null, 2) + "\n");
for (const [name, sum] of Object.entries(manifest.files)) console.log(`${sum}  static/vendor/${name}`);
