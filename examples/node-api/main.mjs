// Drive a sandbox through sandboxq's HTTP API with nothing but fetch:
// ensure it, write a small site, start a server, wait for it, fetch the
// page, follow the project's events for a moment, destroy the sandbox.
//
//   SANDBOXQ_API_URL    default http://127.0.0.1:8080/api/v1
//   SANDBOXQ_API_TOKEN  bearer token (unset: no Authorization header)
//   SANDBOXQ_NAMESPACE  project namespace (default "examples")
//   SANDBOXQ_PROJECT    project name (default node-api-<time>)
//   SANDBOXQ_EVENTS_MS  how long to follow events (default 3000)
//   SANDBOXQ_KEEP=1     keep the sandbox instead of destroying it
//
// Exit status: 0 done, 1 a task failed or the API refused a request.

const API = (process.env.SANDBOXQ_API_URL || "http://127.0.0.1:8080/api/v1").replace(/\/+$/, "");
const TOKEN = process.env.SANDBOXQ_API_TOKEN || "";
const NAMESPACE = process.env.SANDBOXQ_NAMESPACE || "examples";
const NAME = process.env.SANDBOXQ_PROJECT || `node-api-${Date.now()}`;
const EVENTS_MS = Number(process.env.SANDBOXQ_EVENTS_MS || 3000);

const project = { namespace: NAMESPACE, name: NAME };
const projectPath = `/projects/${encodeURIComponent(NAMESPACE)}/${encodeURIComponent(NAME)}`;

class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}: ${body.error ?? JSON.stringify(body)}${body.field ? ` (field ${body.field})` : ""}`);
    this.status = status;
    this.body = body;
  }
}

function headers(extra = {}) {
  const h = { accept: "application/json", ...extra };
  if (TOKEN) h.authorization = `Bearer ${TOKEN}`;
  return h;
}

// call sends one request and returns the decoded JSON answer; a non-2xx
// answer throws an ApiError carrying the API's {error, field}.
async function call(method, path, { body, extraHeaders } = {}) {
  const init = { method, headers: headers(extraHeaders) };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + path, init);
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { error: text };
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

// enqueue posts a payload; the Idempotency-Key makes a retried request
// (after a timeout, a crash of this script) return the first task.
function enqueue(type, payload, key) {
  return call("POST", `/tasks/${encodeURIComponent(type)}`, {
    body: { ...project, ...payload },
    extraHeaders: { "idempotency-key": `${NAMESPACE}/${NAME}/${key}` },
  });
}

// wait long-polls the task until it is completed (its result) or archived
// (an error with the task's last error).
async function wait(task, { timeoutMs = 10 * 60 * 1000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await call("GET", `/tasks/${encodeURIComponent(task.queue)}/${encodeURIComponent(task.id)}?wait=30s`);
    if (st.state === "completed") return st.result;
    if (st.state === "archived") {
      throw new Error(`${st.type} ${st.id} ${st.cancelled ? "was cancelled" : `failed: ${st.last_error}`}`);
    }
    if (Date.now() > deadline) throw new Error(`${st.type} ${st.id} still ${st.state} after ${timeoutMs} ms`);
  }
}

async function run(type, payload, key) {
  const task = await enqueue(type, payload, key);
  console.log(`${type}: task ${task.id} in ${task.queue}${task.duplicate ? " (already enqueued)" : ""}`);
  return wait(task);
}

// followEvents reads the project's Server-Sent Events for ms milliseconds
// and returns them. from=0 replays the retained history first; a client
// that reconnects sends Last-Event-ID with the last id it saw.
async function followEvents(ms, onOpen) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  const seen = [];
  try {
    const res = await fetch(`${API}${projectPath}/events?from=0`, {
      headers: headers({ accept: "text/event-stream" }),
      signal: ctl.signal,
    });
    if (!res.ok) throw new ApiError(res.status, await res.json());
    onOpen?.();
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const ev = {};
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // heartbeat or comment
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "id" || field === "event" || field === "data") ev[field] = value;
        }
        if (!ev.data) continue;
        const data = JSON.parse(ev.data);
        seen.push(data);
        const what = data.server_name ? `server ${data.server_name} ${data.status}` : `sandbox ${data.status}`;
        console.log(`event ${ev.id} ${ev.event}: ${what}${data.url ? ` ${data.url}` : ""}`);
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  } finally {
    clearTimeout(timer);
  }
  return seen;
}

const SERVER_JS = `
const http = require("node:http");
const fs = require("node:fs");
const page = fs.readFileSync(__dirname + "/public/index.html");
http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(page);
}).listen(Number(process.env.PORT || 3000), () => console.log("listening on", process.env.PORT));
`;

async function main() {
  console.log(`API ${API}, project ${NAMESPACE}/${NAME}`);

  const sandbox = await run("sandbox:ensure", {}, "ensure");
  console.log(`sandbox ${sandbox.sandbox_id} (${sandbox.created ? "created" : "existing"}, ${sandbox.status})`);

  const written = await run("files:write", {
    files: [
      { path: "site/server.cjs", content: SERVER_JS },
      { path: "site/public/index.html", content: `<!doctype html><h1>Hello from ${NAME}</h1>\n` },
    ],
  }, "files");
  console.log(`files: ${written.written} written, ${written.bytes} bytes`);

  const server = await run("server:start", { slug: "web", command: "node server.cjs", path: "site" }, "start");
  console.log(`server ${server.slug} ${server.status} at ${server.url}`);

  const page = await fetch(server.url);
  console.log(`GET ${server.url}: ${page.status} ${(await page.text()).trim()}`);

  try {
    const entry = await call("GET", projectPath);
    console.log(`registry: sandbox ${entry.sandbox_id} ${entry.status}, servers: ${Object.keys(entry.servers ?? {}).join(", ") || "none yet"}`);
  } catch (err) {
    // 404: nothing recorded yet; 503: the server runs without a registry.
    if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 503)) throw err;
    console.log(`registry: ${err.body.error}`);
  }

  const seen = await followEvents(EVENTS_MS, () => console.log(`following events for ${EVENTS_MS} ms`));
  console.log(`events: ${seen.length} received`);

  if (process.env.SANDBOXQ_KEEP === "1") {
    console.log("keeping the sandbox (SANDBOXQ_KEEP=1)");
    return;
  }
  const destroyed = await run("sandbox:destroy", {}, "destroy");
  console.log(`destroyed: ${destroyed.destroyed}`);
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
