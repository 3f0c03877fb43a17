// Type tests of @sandboxq/client: `tsc --strict --noEmit` must accept this
// file, so every line under a @ts-expect-error must fail to compile (tsc
// reports an unused @ts-expect-error as an error). Nothing here runs.
import type { Sandbox, SandboxEvent, Sandboxq, ServerResult, TaskHandle } from "@sandboxq/client";

export async function typeTests(sq: Sandboxq, sandbox: Sandbox): Promise<void> {
  // @ts-expect-error slug is required by the server:start schema of the OpenAPI document
  await sandbox.servers.start({ command: "npm run dev", path: "/app" });
  // @ts-expect-error command is required too
  await sandbox.servers.start({ slug: "web" });
  // @ts-expect-error restartPolicy is one of never, on-failure, always
  await sandbox.servers.start({ slug: "web", command: "x", restartPolicy: "sometimes" });
  // @ts-expect-error waitFor is ready or running
  await sandbox.servers.start({ slug: "web", command: "x", waitFor: "healthy" });
  // @ts-expect-error wire names are not accepted: the client speaks camelCase
  await sandbox.servers.start({ slug: "web", command: "x", wait_for: "running" });
  // @ts-expect-error a project needs a name or a projectGroupId
  await sq.findOrCreate({ tenantKey: "user_456" });
  // @ts-expect-error commands.run needs a command
  await sandbox.commands.run({ cwd: "/app" });
  // @ts-expect-error file contents are text or bytes
  await sandbox.files.write("/app/x", 42);

  const server: ServerResult = await sandbox.servers.start({ slug: "web", command: "npm run dev", path: "/app", waitFor: "running", healthCheck: { path: "/", intervalMs: 500 } });
  const port: number | undefined = server.port;
  // @ts-expect-error with wait: false the call returns the task's handle, not the server
  const notYet: ServerResult = await sandbox.servers.start({ slug: "web", command: "x" }, { wait: false });
  const handle: TaskHandle<ServerResult> = await sandbox.servers.start({ slug: "web", command: "x" }, { wait: false, idempotencyKey: "start-web-1" });
  const later: ServerResult = await handle.result({ signal: AbortSignal.timeout(1000) });
  const bytes: number = (await sandbox.files.write("/app/logo.png", new Uint8Array([137, 80, 78, 71]))).bytes;
  const exit: number = (await sandbox.commands.run({ command: "ls", timeoutMs: 5000 })).exitCode;

  for await (const e of sandbox.events({ since: "0" })) {
    narrow(e);
    break;
  }
  void [port, notYet, later, bytes, exit];
}

function narrow(e: SandboxEvent): string {
  if (e.type === "server.status_changed") return `${e.serverName} ${e.status} ${e.url ?? ""} ${e.exitCode ?? ""}`;
  // @ts-expect-error serverName exists only on server.status_changed
  return `${e.status} ${e.serverName}`;
}
