// The usage of a backend's sandbox wrapper (ComputeSandbox), rewritten line
// for line on @sandboxq/client. Every mutating call is a durable task the
// worker retries; each line waits for its task's result.
//
//   SANDBOXQ_URL    the worker (default http://127.0.0.1:8080)
//   SANDBOXQ_TOKEN  a bearer token of the worker's API_TOKENS (optional)
//   PROJECT, TENANT the project (default proj_123, user_456)
//
// Build and run: npm run build && npm start
import { Sandboxq, TaskFailedError, ValidationError, type SandboxEvent } from "@sandboxq/client";

const sq = new Sandboxq({ url: process.env.SANDBOXQ_URL ?? "http://127.0.0.1:8080", token: process.env.SANDBOXQ_TOKEN });
const projectGroupId = process.env.PROJECT ?? "proj_123";
const tenantKey = process.env.TENANT ?? "user_456";

async function main(): Promise<void> {
  // Before: const sandbox = await ComputeSandbox.findOrCreate({ projectGroupId: 'proj_123', tenantKey: 'user_456', timeout: 2 * 60 * 60 * 1000 });
  const sandbox = await sq.findOrCreate({ projectGroupId, tenantKey, timeout: 2 * 60 * 60 * 1000 });
  console.log(`sandbox ${sandbox.sandboxId} of ${sandbox.tenantKey}/${sandbox.projectGroupId}`);
  await sandbox.files.write("/app/package.json", JSON.stringify({ scripts: { dev: "node server.cjs" } }));
  await sandbox.files.write(
    "/app/server.cjs",
    'require("node:http").createServer((q, s) => s.end("hello")).listen(Number(process.env.PORT), "127.0.0.1");\n',
  );

  // Before: await sandbox.subscribeToEvents();   (moved up so the server's transitions are seen)
  sandbox.on("event", (e: SandboxEvent) => {
    if (e.type === "server.status_changed") console.log(`event: server ${e.serverName} ${e.status}${e.url ? ` ${e.url}` : ""}`);
    else console.log(`event: sandbox ${e.status}`);
  });
  sandbox.on("error", (err) => console.error(`events: ${String(err)}`));
  await sandbox.subscribeToEvents();

  // Before: await sandbox.servers.start({ slug: 'dev-server', command: 'npm run dev', path: '/app' });
  const server = await sandbox.servers.start({ slug: "dev-server", command: "npm run dev", path: "/app" });
  console.log(`server ${server.slug} ${server.status} at ${server.url}`);

  // Before: const isRunning = await sandbox.isServerRunning('dev-server');
  const isRunning = await sandbox.isServerRunning("dev-server");
  console.log(`running: ${isRunning}`);

  // Before: const existing = await ComputeSandbox.find({ projectGroupId: 'proj_123', tenantKey: 'user_456' }); // or null
  const existing = await sq.find({ projectGroupId, tenantKey });
  console.log(`find: ${existing?.sandboxId ?? "null"}`);

  sandbox.unsubscribeFromEvents();
  // Before: await sandbox.destroy();
  await sandbox.destroy();
  console.log(`after destroy, find: ${(await sq.find({ projectGroupId, tenantKey }))?.sandboxId ?? "null"}`);
}

main().catch((err: unknown) => {
  if (err instanceof ValidationError) console.error(`invalid ${err.field}: ${err.message}`);
  else if (err instanceof TaskFailedError) console.error(`task failed (${err.attempts} attempts): ${err.error}`);
  else console.error(err);
  process.exit(1);
});
