// The client against a real `worker -dev` (local provider, real Redis):
// the e2e Go test TestTypeScriptClient starts one and runs this suite with
// SANDBOXQ_URL and SANDBOXQ_TOKEN set.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { ConnectionError, NotFoundError, Sandboxq, TaskFailedError, TimeoutError, ValidationError } from "../dist/index.js";
import { SERVER_JS, closedPort, env, skip, startProxy, unique, within } from "./helpers.mjs";

const sq = skip ? undefined : new Sandboxq({ url: env.url, token: env.token });
const ns = env.namespace;

describe("sandboxes", { skip }, () => {
  test("findOrCreate twice gives one sandbox; another tenantKey another", async () => {
    const project = unique("twice");
    const [a, b] = await Promise.all([
      sq.findOrCreate({ projectGroupId: project, tenantKey: ns, timeout: 2 * 60 * 60 * 1000 }),
      sq.findOrCreate({ projectGroupId: project, tenantKey: ns }),
    ]);
    const c = await sq.findOrCreate({ name: project, namespace: ns });
    assert.match(a.sandboxId, /\S/);
    assert.equal(b.sandboxId, a.sandboxId);
    assert.equal(c.sandboxId, a.sandboxId);
    assert.equal(a.projectGroupId, project);
    assert.equal(a.tenantKey, ns);
    assert.equal(a.name, project);
    assert.equal(a.namespace, ns);

    const other = await sq.findOrCreate({ projectGroupId: project, tenantKey: `${ns}-other` });
    assert.notEqual(other.sandboxId, a.sandboxId);
    assert.equal(other.tenantKey, `${ns}-other`);

    const found = await sq.find({ projectGroupId: project, tenantKey: ns });
    assert.ok(found, "find of a project with a sandbox is null");
    assert.equal(found.sandboxId, a.sandboxId);
    await other.destroy();
  });

  test("find of an unknown project is null", async () => {
    assert.equal(await sq.find({ name: unique("never-created"), namespace: ns }), null);
  });

  test("destroy, then find is null", async () => {
    const sb = await sq.findOrCreate({ name: unique("destroy"), namespace: ns });
    assert.ok(await sq.find({ name: sb.name, namespace: ns }), "find before destroy");
    assert.equal(await sb.destroy(), true);
    assert.equal(await sq.find({ name: sb.name, namespace: ns }), null);
    assert.equal(await sb.destroy(), false, "a second destroy finds nothing to destroy");
  });

  test("a worker that is not there: ConnectionError naming the URL", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const down = new Sandboxq({ url, maxRetries: 0 });
    await assert.rejects(down.find({ name: "x" }), (err) => {
      assert.ok(err instanceof ConnectionError, `got ${err}`);
      assert.equal(err.url, `${url}/api/v1/projects/default/x/sandbox`);
      assert.match(err.message, new RegExp(`cannot reach the sandboxq worker at ${url}/api/v1/`));
      return true;
    });
  });
});

describe("a project's servers, files, commands and env", { skip }, () => {
  let sb;
  before(async () => {
    sb = await sq.findOrCreate({ projectGroupId: unique("app"), tenantKey: ns });
    await sb.files.write("/app/server.cjs", SERVER_JS);
  });
  after(async () => {
    await sb?.destroy();
  });

  test("servers.start resolves ready with a URL that answers", async () => {
    const web = await sb.servers.start({ slug: "web", command: "node server.cjs", path: "/app", env: { GREETING: "typescript" } });
    assert.equal(web.slug, "web");
    assert.equal(web.status, "ready");
    assert.match(web.url, /^http:\/\/127\.0\.0\.1:\d+/);
    const res = await fetch(web.url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello typescript");

    assert.equal(await sb.isServerRunning("web"), true);
    assert.equal(await sb.isServerActive("web"), true);
    assert.equal(await sb.isServerRunning("absent"), false);
    assert.equal(await sb.isServerActive("absent"), false);
    const got = await sb.servers.retrieve("web");
    assert.equal(got?.status, "ready");
    assert.equal(got?.url, web.url);

    const stopped = await sb.servers.stop("web");
    assert.equal(stopped.status, "stopped");
    assert.equal(await sb.isServerRunning("web"), false);
    assert.equal(await sb.isServerActive("web"), false);
  });

  test("a bad slug is a ValidationError naming slug", async () => {
    await assert.rejects(sb.servers.start({ slug: "bad slug!", command: "true" }), (err) => {
      assert.ok(err instanceof ValidationError, `got ${err}`);
      assert.equal(err.field, "slug");
      assert.equal(err.status, 400);
      return true;
    });
  });

  test("commands.run returns output; a failing command is a TaskFailedError with its exit code", async () => {
    const ok = await sb.commands.run({ command: "printf out; printf err >&2", cwd: "/app" });
    assert.deepEqual([ok.exitCode, ok.stdout, ok.stderr], [0, "out", "err"]);

    await assert.rejects(sb.commands.run({ command: "echo failing >&2; exit 3" }), (err) => {
      assert.ok(err instanceof TaskFailedError, `got ${err}`);
      assert.equal(err.exitCode, 3);
      assert.equal(err.type, "command:run");
      assert.equal(err.attempts, 1, "a non-zero exit is permanent: no retry");
      assert.match(err.error, /code 3/);
      assert.equal(err.result.stderr, "failing\n");
      return true;
    });

    const soft = await sb.commands.run({ command: "exit 4", failOnNonzero: false });
    assert.equal(soft.exitCode, 4);
  });

  test("a 1 MiB random binary file arrives byte for byte", async () => {
    const bytes = new Uint8Array(randomBytes(1 << 20));
    const sum = createHash("sha256").update(bytes).digest("hex");
    const res = await sb.files.write("/app/blob.bin", bytes);
    assert.equal(res.written, 1);
    assert.equal(res.bytes, 1 << 20);
    const check = await sb.commands.run({ command: "sha256sum blob.bin && wc -c < blob.bin", cwd: "/app" });
    assert.equal(check.stdout, `${sum}  blob.bin\n${1 << 20}\n`);
  });

  test("files.write, read, batchWrite and delete", async () => {
    await sb.files.write("/app/notes/a.txt", "héllo\n");
    assert.equal(await sb.files.read("/app/notes/a.txt"), "héllo\n");
    const batch = await sb.files.batchWrite([
      { path: "/app/notes/b.txt", content: "b" },
      { path: "/app/notes/c.bin", content: new Uint8Array([0, 255, 1]) },
      { path: "/app/notes/a.txt", operation: "delete" },
    ]);
    assert.deepEqual([batch.written, batch.deleted], [2, 1]);
    assert.equal(await sb.files.read("/app/notes/b.txt"), "b");
    const od = await sb.commands.run({ command: "od -An -tu1 notes/c.bin | tr -s ' '", cwd: "/app" });
    assert.equal(od.stdout.trim(), "0 255 1");
    await assert.rejects(sb.files.read("/app/notes/a.txt"), NotFoundError);
    await sb.files.delete("/app/notes/b.txt");
    await assert.rejects(sb.files.read("/app/notes/b.txt"), NotFoundError);
  });

  test("env.update, retrieve and remove", async () => {
    assert.deepEqual((await sb.env.update({ API_URL: "http://x", MODE: "dev" })).sort(), ["API_URL", "MODE"]);
    assert.deepEqual(await sb.env.retrieve(), { API_URL: "http://x", MODE: "dev" });
    assert.deepEqual(await sb.env.remove(["MODE"]), ["MODE"]);
    assert.deepEqual(await sb.env.retrieve(), { API_URL: "http://x" });
    await sb.env.update({ OTHER: "1" }, { file: "/app/.env.local" });
    assert.deepEqual(await sb.env.retrieve({ file: "/app/.env.local" }), { OTHER: "1" });
  });

  test("an Idempotency-Key enqueues once; wait:false returns the handle", async () => {
    const key = unique("key");
    const h1 = await sb.files.write("/app/once.txt", "1", { wait: false, idempotencyKey: key });
    const h2 = await sb.files.write("/app/once.txt", "1", { wait: false, idempotencyKey: key });
    assert.equal(h2.id, h1.id);
    assert.equal(h1.type, "files:write");
    assert.equal(h1.queue, "default");
    assert.deepEqual(await h1.result(), { written: 1, deleted: 0, bytes: 1 });
    const h3 = await sb.files.write("/app/once.txt", "1", { wait: false });
    assert.notEqual(h3.id, h1.id, "without a key every call is its own task");
    await h3.result();
  });

  test("a wait bounded by timeoutMs is a TimeoutError; a signal aborts the call", async () => {
    const h = await sb.commands.run({ command: "sleep 2" }, { wait: false });
    await assert.rejects(h.result({ timeoutMs: 100 }), (err) => err instanceof TimeoutError && err.timeoutMs === 100);
    const ctl = new AbortController();
    const p = h.result({ signal: ctl.signal });
    ctl.abort();
    await assert.rejects(p, { name: "AbortError" });
    assert.equal((await h.result()).exitCode, 0);
  });
});

describe("events", { skip }, () => {
  test("arrive in order and resume after the connection is cut mid-stream, none lost or repeated", async () => {
    const proxy = await startProxy(env.url);
    const name = unique("events");
    const sb = await sq.findOrCreate({ name, namespace: ns });
    await sb.files.write("/app/server.cjs", SERVER_JS);
    const viaProxy = await new Sandboxq({ url: proxy.url, token: env.token }).findOrCreate({ name, namespace: ns });
    const it = viaProxy.events({ since: "0", reconnectMs: 20 });
    const seen = [];
    const next = async () => {
      const r = await within(30_000, it.next(), "events via the proxy");
      assert.ok(!r.done, "the event stream ended");
      seen.push(r.value);
      return r.value;
    };
    try {
      await next(); // the sandbox's creation
      proxy.cut();
      const started = sb.servers.start({ slug: "web", command: "node server.cjs", path: "/app", env: { GREETING: "events" } });
      let e;
      do e = await next();
      while (!(e.type === "server.status_changed" && e.serverName === "web"));
      proxy.cut(); // again, in the middle of the server's transitions
      do e = await next();
      while (!(e.type === "server.status_changed" && e.status === "ready"));
      const ready = await started;
      assert.equal(e.url, ready.url);
    } finally {
      await it.return();
      await proxy.close();
    }
    assert.ok(proxy.connections >= 3, `the stream reconnected ${proxy.connections - 1} times, want 2`);

    // The reference: the same stream read directly, without a cut.
    const reference = [];
    for await (const e of sb.events({ since: "0" })) {
      reference.push(e);
      if (e.id === seen.at(-1).id) break;
    }
    assert.deepEqual(seen, reference);
    const ids = seen.map((e) => e.id.split("-").map(Number));
    for (let i = 1; i < ids.length; i++) {
      assert.ok(ids[i][0] > ids[i - 1][0] || (ids[i][0] === ids[i - 1][0] && ids[i][1] > ids[i - 1][1]), `event ids out of order: ${seen.map((e) => e.id)}`);
    }
    assert.ok(seen.every((e) => e.sandboxId === sb.sandboxId && e.namespace === ns && e.name === name));
    await sb.destroy();
  });

  test("a connection that goes silent is dropped and reopened", async () => {
    const proxy = await startProxy(env.url);
    const name = unique("silent");
    const sb = await sq.findOrCreate({ name, namespace: ns });
    await sb.files.write("/app/server.cjs", SERVER_JS);
    const viaProxy = await new Sandboxq({ url: proxy.url, token: env.token }).findOrCreate({ name, namespace: ns });
    const it = viaProxy.events({ since: "0", idleMs: 300, reconnectMs: 20 });
    try {
      const first = await within(30_000, it.next(), "first event");
      assert.equal(first.value.type, "sandbox.status_changed");
      const opened = proxy.connections;
      proxy.freeze();
      await sb.servers.start({ slug: "web", command: "node server.cjs", path: "/app", env: { GREETING: "x" } });
      let e;
      do e = (await within(30_000, it.next(), "events after the freeze")).value;
      while (!(e.type === "server.status_changed" && e.status === "ready"));
      assert.ok(proxy.connections > opened, "the silent connection was not replaced");
    } finally {
      await it.return();
      await proxy.close();
    }
    await sb.destroy();
  });

  test("subscribeToEvents delivers typed events to on('event') until unsubscribed", async () => {
    const sb = await sq.findOrCreate({ projectGroupId: unique("subscribe"), tenantKey: ns });
    await sb.files.write("/app/server.cjs", SERVER_JS);
    const events = [];
    let ready;
    const gotReady = new Promise((resolve) => (ready = resolve));
    sb.on("event", (e) => events.push(e));
    sb.on("server.status_changed", (e) => e.status === "ready" && ready(e));
    await sb.subscribeToEvents();
    try {
      await sb.servers.start({ slug: "web", command: "node server.cjs", path: "/app", env: { GREETING: "x" } });
      const e = await within(30_000, gotReady, "server ready event");
      assert.equal(e.serverName, "web");
      assert.match(e.url, /^http:\/\//);
      assert.ok(events.includes(e));
      assert.ok(events.every((x) => x.type === "server.status_changed" || x.type === "sandbox.status_changed"));
    } finally {
      sb.unsubscribeFromEvents();
    }
    const before = events.length;
    await sb.servers.stop("web");
    // Read past the stop on a stream of our own: nothing more reached the unsubscribed listener.
    for await (const e of sb.events({ since: events.at(-1).id })) if (e.type === "server.status_changed" && e.status === "stopped") break;
    assert.equal(events.length, before);
    await sb.destroy();
  });
});
