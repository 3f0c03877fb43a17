import { ApiError, SandboxqError } from "./errors.js";
import { link, sleep, type Transport } from "./http.js";
import type { EventWire } from "./wire.js";

/** A managed server's status, in the order a start goes through. */
export type ServerStatus = "installing" | "starting" | "running" | "ready" | "restarting" | "stopped" | "failed";
/** A sandbox's status. */
export type SandboxStatus = "created" | "ready" | "destroyed" | "error";

interface EventBase {
  /** The event id (its Redis stream id); pass it as `since` to read what came after it. */
  id: string;
  namespace: string;
  name: string;
  sandboxId: string;
  /** RFC 3339. */
  timestamp: string;
}

/** A managed server changed status. */
export interface ServerStatusChangedEvent extends EventBase {
  type: "server.status_changed";
  /** The server's slug. */
  serverName: string;
  status: ServerStatus;
  url?: string;
  port?: number;
  exitCode?: number;
  error?: string;
}

/** The sandbox changed status. */
export interface SandboxStatusChangedEvent extends EventBase {
  type: "sandbox.status_changed";
  status: SandboxStatus;
  error?: string;
}

/** An event of a project. Narrow on `type`. */
export type SandboxEvent = ServerStatusChangedEvent | SandboxStatusChangedEvent;

/** Options of {@link Sandbox.events}. */
export interface EventsOptions {
  /**
   * Read the events after this event id. "0": every retained event first.
   * Default: only events that happen after the stream opens.
   */
  since?: string;
  /** Ends the iteration (it then returns without an error). */
  signal?: AbortSignal;
  /** First pause before a reconnect in ms, doubled per failed attempt up to 5 s (default 100). */
  reconnectMs?: number;
  /** A connection that delivers nothing, not even the server's heartbeat, for this long in ms is dropped and reopened (default 45 000). */
  idleMs?: number;
}

export interface StreamHooks {
  /** Each time a connection is open and reading. */
  onOpen?: () => void;
  /** A connection failed or dropped; the stream reconnects. */
  onError?: (err: unknown) => void;
}

/** toEvent maps an event of the wire to its typed form (undefined for a type this client does not know). */
export function toEvent(w: EventWire): SandboxEvent | undefined {
  const base = { id: w.id, namespace: w.namespace, name: w.name, sandboxId: w.sandbox_id, timestamp: w.timestamp };
  const opt = <T>(k: string, v: T | undefined) => (v === undefined || v === null ? {} : { [k]: v });
  if (w.type === "server.status_changed") {
    return { ...base, type: w.type, serverName: w.server_name ?? "", status: w.status as ServerStatus, ...opt("url", w.url), ...opt("port", w.port), ...opt("exitCode", w.exit_code), ...opt("error", w.error) };
  }
  if (w.type === "sandbox.status_changed") {
    return { ...base, type: w.type, status: w.status as SandboxStatus, ...opt("error", w.error) };
  }
  return undefined;
}

/** The opening comment of a stream names the id it reads from ("$" resolved). */
const openingRE = /^: stream of .* from (\S+)$/;

/**
 * streamEvents reads a project's Server-Sent Events over fetch and
 * reconnects after any drop with Last-Event-ID set to the last event it
 * yielded, so no event is lost or repeated. A stream that starts with
 * "new events only" learns the position it started from from the server's
 * opening line, so a drop before the first event loses nothing either. A
 * connection silent for longer than idleMs (the server sends a heartbeat
 * every 15 s) counts as dropped. It ends when the signal aborts; an HTTP
 * error other than 408, 429 and 5xx ends it with that error.
 */
export async function* streamEvents(t: Transport, path: string, o: EventsOptions = {}, hooks: StreamHooks = {}): AsyncGenerator<SandboxEvent, void, undefined> {
  const ctl = new AbortController();
  const unlink = link(o.signal, ctl);
  const pos = { last: o.since };
  const first = o.reconnectMs ?? 100;
  let pause = first;
  try {
    while (!ctl.signal.aborted) {
      // One controller per connection: ending it ends the connection's fetch and its listeners.
      const conn = new AbortController();
      const unlinkConn = link(ctl.signal, conn);
      try {
        const res = await t.send({ method: "GET", path, headers: { "last-event-id": pos.last ?? "$" }, signal: conn.signal, stream: true });
        hooks.onOpen?.();
        for await (const e of connectionEvents(res, conn, pos, o.idleMs ?? 45_000)) {
          pause = first;
          yield e;
        }
        if (ctl.signal.aborted) return;
        hooks.onError?.(new SandboxqError(`event stream ${t.url(path)} ended; reconnecting after event ${pos.last ?? "$"}`));
      } catch (err) {
        if (ctl.signal.aborted) return;
        if (err instanceof ApiError && !retryableStatus(err.status)) throw err;
        hooks.onError?.(err);
      } finally {
        unlinkConn();
        conn.abort();
      }
      await sleep(pause, ctl.signal).catch(() => {});
      pause = Math.min(pause * 2, 5000);
    }
  } finally {
    unlink();
    ctl.abort();
  }
}

/** connectionEvents yields the events of one connection and records the position of each in pos before it is yielded. */
async function* connectionEvents(res: Response, conn: AbortController, pos: { last: string | undefined }, idleMs: number): AsyncGenerator<SandboxEvent> {
  let idle = setTimeout(() => conn.abort(), idleMs);
  try {
    for await (const block of sseBlocks(res, conn.signal)) {
      clearTimeout(idle);
      idle = setTimeout(() => conn.abort(), idleMs);
      if (block.opening && (pos.last === undefined || pos.last === "$")) pos.last = block.opening;
      if (block.data === undefined || block.id === undefined) continue;
      const e = toEvent(JSON.parse(block.data) as EventWire);
      pos.last = block.id;
      if (e) yield e;
    }
    if (conn.signal.aborted) throw new SandboxqError(`event stream silent for ${idleMs} ms; reconnecting`);
  } finally {
    clearTimeout(idle);
  }
}

function retryableStatus(s: number): boolean {
  return s === 408 || s === 429 || s >= 500;
}

interface Block {
  id?: string;
  event?: string;
  data?: string;
  opening?: string;
}

/** sseBlocks splits a text/event-stream body into its blocks. */
async function* sseBlocks(res: Response, signal: AbortSignal): AsyncGenerator<Block> {
  if (!res.body) return;
  const reader = res.body.getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const text = buf.slice(0, end);
        buf = buf.slice(end + 2);
        yield parseBlock(text);
      }
    }
  } finally {
    signal.removeEventListener("abort", cancel);
    cancel();
  }
}

function parseBlock(text: string): Block {
  const b: Block = {};
  for (const line of text.split("\n")) {
    if (line.startsWith(":")) {
      const m = openingRE.exec(line);
      if (m) b.opening = m[1];
      continue;
    }
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") b.id = value;
    else if (field === "event") b.event = value;
    else if (field === "data") b.data = b.data === undefined ? value : `${b.data}\n${value}`;
  }
  return b;
}
