// Fails when src/generated/openapi.ts is not what openapi-typescript makes
// of ../../api/openapi.json today: regenerate with `npm run generate` and
// commit the result.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const committed = join(root, "src", "generated", "openapi.ts");
const dir = mkdtempSync(join(tmpdir(), "sandboxq-openapi-"));
try {
  const fresh = join(dir, "openapi.ts");
  execFileSync(
    process.execPath,
    [join(root, "node_modules", "openapi-typescript", "bin", "cli.js"), join(root, "..", "..", "api", "openapi.json"),
      "--default-non-nullable", "false", "-o", fresh],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  if (readFileSync(fresh, "utf8") !== readFileSync(committed, "utf8")) {
    console.error("src/generated/openapi.ts is out of date with api/openapi.json: run `npm run generate` in clients/typescript and commit it");
    process.exit(1);
  }
  console.log("src/generated/openapi.ts is current");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
