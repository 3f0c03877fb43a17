// Drives a sandboxq local provider with the official computesdk client
// (computesdk@2.5.4). The Go test TestConformanceOfficialClient starts the
// provider and runs this script with GATEWAY_URL and API_KEY set.
//
// Every check prints one line; the script ends with "N passed, M failed" and
// exits non-zero if anything failed.
import assert from "node:assert/strict";
import { compute } from "computesdk";
import NodeWebSocket from "ws";

const gatewayUrl = process.env.GATEWAY_URL;
const apiKey = process.env.API_KEY;
if (!gatewayUrl || !apiKey) {
  console.error("GATEWAY_URL and API_KEY must be set");
  process.exit(2);
}

// Node 20 has no global WebSocket. The client's binary decoder reads
// buf.buffer without byteOffset, so ask ws for fresh ArrayBuffers rather
// than pooled Buffers (protocol notes §3.3, quirk 3).
class WebSocket extends NodeWebSocket {
  constructor(...args) {
    super(...args);
    this.binaryType = "arraybuffer";
  }
}
// WebSocketManager.isConnected reads the global WebSocket.OPEN whatever
// implementation it was given; Node 20 has none.
globalThis.WebSocket ??= WebSocket;

compute.setConfig({
  // The client insists on a known provider name and its credentials; the
  // local provider ignores both (they only become X-Provider / X-E2B-API-Key).
  provider: "e2b",
  e2b: { apiKey: "unused-by-the-local-provider" },
  computesdkApiKey: apiKey,
  gatewayUrl,
  WebSocket,
});

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
  }
}

async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const ns = "conformance";
const name = `proj-${process.pid}`;
let sandbox;

await check("create and destroy an anonymous sandbox", async () => {
  const sb = await compute.sandbox.create({});
  assert.ok(sb.sandboxId, "sandboxId");
  const again = await compute.sandbox.getById(sb.sandboxId);
  assert.equal(again.sandboxId, sb.sandboxId);
  await compute.sandbox.destroy(sb.sandboxId);
  assert.equal(await compute.sandbox.getById(sb.sandboxId), null);
});

await check("findOrCreate is idempotent per (namespace, name)", async () => {
  sandbox = await compute.sandbox.findOrCreate({ namespace: ns, name });
  const second = await compute.sandbox.findOrCreate({ namespace: ns, name });
  assert.equal(second.sandboxId, sandbox.sandboxId);
  const other = await compute.sandbox.findOrCreate({ namespace: `${ns}-other`, name });
  assert.notEqual(other.sandboxId, sandbox.sandboxId);
  await compute.sandbox.destroy(other.sandboxId);
});

await check("find returns the sandbox, and null for a miss", async () => {
  const found = await compute.sandbox.find({ namespace: ns, name });
  assert.equal(found.sandboxId, sandbox.sandboxId);
  assert.equal(await compute.sandbox.find({ namespace: ns, name: "does-not-exist" }), null);
});

await check("health", async () => {
  const h = await sandbox.health();
  assert.equal(h.status, "ok");
});

await check("write, read and list files", async () => {
  await sandbox.filesystem.writeFile("/app/hello.txt", "hello, sandbox\n");
  assert.equal(await sandbox.filesystem.readFile("/app/hello.txt"), "hello, sandbox\n");
  const entries = await sandbox.filesystem.readdir("/app");
  assert.ok(entries.some((e) => e.name === "hello.txt" && e.type === "file"), JSON.stringify(entries));
  assert.equal(await sandbox.file.exists("/app/hello.txt"), true);
  assert.equal(await sandbox.file.exists("/app/missing.txt"), false);
});

await check("batch write and delete", async () => {
  const results = await sandbox.file.batchWrite([
    { path: "/app/b.txt", operation: "write", content: "B" },
    { path: "/app/a.txt", operation: "write", content: "A" },
    { path: "/app/hello.txt", operation: "delete" },
  ]);
  assert.equal(results.length, 3);
  assert.ok(results.every((r) => r.success), JSON.stringify(results));
  assert.equal(await sandbox.filesystem.readFile("/app/a.txt"), "A");
  assert.equal(await sandbox.file.exists("/app/hello.txt"), false);
});

await check("a path escaping the sandbox is refused", async () => {
  await assert.rejects(sandbox.filesystem.writeFile("/app/../../../../etc/sandboxq-escape", "x"), /400/);
});

await check("run a command with cwd and env", async () => {
  const r = await sandbox.runCommand("echo hi && pwd && echo $GREETING >&2", {
    cwd: "/app",
    env: { GREETING: "hey" },
  });
  assert.equal(r.exitCode, 0);
  assert.match(r.stdout, /^hi\n.*\/app\n$/s);
  assert.equal(r.stderr, "hey\n");
  const bad = await sandbox.runCommand("exit 7");
  assert.equal(bad.exitCode, 7);
});

await check("env set, get and remove", async () => {
  const keys = await sandbox.env.update(".env", { A: "1", B: "two words" });
  assert.deepEqual([...keys].sort(), ["A", "B"]);
  assert.deepEqual(await sandbox.env.retrieve(".env"), { A: "1", B: "two words" });
  await sandbox.env.remove(".env", ["A"]);
  assert.deepEqual(await sandbox.env.retrieve(".env"), { B: "two words" });
  assert.equal(await sandbox.env.exists(".env"), true);
});

await check("start a server, see it ready, fetch its URL, stop it", async () => {
  await sandbox.filesystem.writeFile(
    "/app/server.js",
    `require("http").createServer((q, s) => s.end("hello from " + q.url)).listen(process.env.PORT, "127.0.0.1");\n`,
  );
  const signals = await sandbox.signal.start();
  const seen = [];
  signals.on("signal", (e) => seen.push(e));

  const started = await sandbox.server.start({ slug: "web", start: "node server.js", path: "/app" });
  assert.equal(started.slug, "web");
  const ready = await until("server ready", async () => {
    const s = await sandbox.server.retrieve("web");
    return s.status === "ready" ? s : null;
  });
  assert.ok(ready.url, "ready server has a url");
  const res = await fetch(`${ready.url}/ping`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "hello from /ping");

  await until("server-ready signal", async () => seen.some((e) => e.signal === "server-ready"));

  const servers = await sandbox.server.list();
  assert.ok(servers.some((s) => s.slug === "web"));
  const logs = await sandbox.server.logs("web");
  assert.equal(typeof logs, "object");

  await sandbox.server.stop("web");
  const stopped = await until("server stopped", async () => {
    const s = await sandbox.server.retrieve("web");
    return s.status === "stopped" ? s : null;
  });
  assert.equal(stopped.status, "stopped");
  await assert.rejects(fetch(`${ready.url}/ping`));
  await signals.stop();
});

await check("destroy through the gateway", async () => {
  await sandbox.disconnect?.();
  await compute.sandbox.destroy(sandbox.sandboxId);
  assert.equal(await compute.sandbox.find({ namespace: ns, name }), null);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
