// Helpers of the test suite: the worker under test, a TCP proxy whose
// connections the tests can cut, and deadlines for awaiting.
import net from "node:net";
import { randomBytes } from "node:crypto";

/** The worker under test, from the environment the e2e Go test sets. */
export const env = {
  url: process.env.SANDBOXQ_URL ?? "",
  token: process.env.SANDBOXQ_TOKEN || undefined,
  // Each run uses its own namespace, so reruns against one Redis do not meet.
  namespace: process.env.SANDBOXQ_TEST_NAMESPACE || `ts-${randomBytes(4).toString("hex")}`,
};

/** skip is the reason to skip the suite: it needs a worker. */
export const skip = env.url ? false : "SANDBOXQ_URL is not set: run through the e2e Go test (go test ./e2e -run TypeScriptClient) or point it at a `worker -dev`";

/** unique returns a project name no other test uses. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** within rejects when p has not settled after ms. */
export function within(ms, p, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * startProxy forwards a local port to target (host:port) and counts the
 * connections; cut() destroys every open one, as a dropped network would,
 * and freeze() stops forwarding the answers of the open ones while keeping
 * them open, as a half-open connection does.
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  const pairs = new Set();
  let connections = 0;
  const server = net.createServer((down) => {
    connections++;
    const up = net.connect(Number(port), hostname);
    open.add(down);
    open.add(up);
    const pair = { up, down };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
      open.delete(down);
      open.delete(up);
    };
    down.on("error", drop).on("close", drop);
    up.on("error", drop).on("close", drop);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  return {
    url: `http://127.0.0.1:${addr.port}`,
    get connections() {
      return connections;
    },
    freeze() {
      for (const { up, down } of pairs) {
        up.unpipe(down);
        up.pause();
      }
    },
    cut() {
      for (const s of open) s.destroy();
      open.clear();
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** closedPort returns a loopback port nothing listens on. */
export async function closedPort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** A small HTTP server for a sandbox: answers "hello <GREETING>" on $PORT. */
export const SERVER_JS = `
const http = require("node:http");
http.createServer((req, res) => res.end("hello " + process.env.GREETING))
  .listen(Number(process.env.PORT), "127.0.0.1");
`;
