import { NotFoundError } from "./errors.js";
import { streamEvents, type EventsOptions, type SandboxEvent, type SandboxStatusChangedEvent, type ServerStatus, type ServerStatusChangedEvent } from "./events.js";
import type { RequestOptions, Transport } from "./http.js";
import { run, type NoWait, type TaskHandle, type TaskOptions } from "./tasks.js";
import type { Body, EnvWire, FileContentWire, FileWire, HealthCheckWire, Result, SandboxWire, ServerWire } from "./wire.js";

type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
/** Camelize renames the top-level keys of a wire type from snake_case to camelCase, keeping their types and optionality. */
export type Camelize<T> = { [K in keyof T as K extends string ? Camel<K> : K]: T[K] };

/** The identity of a project: the wrapper's names, or sandboxq's. tenantKey/namespace default to "default". */
export type ProjectRef = { projectGroupId: string; tenantKey?: string } | { name: string; namespace?: string };

/** Options of servers.start: the server:start payload of the OpenAPI document, camelCased. */
export type ServerStartParams = Camelize<Omit<Body<"server:start">, "namespace" | "name" | "wait" | "ensure" | "health_check">> & {
  healthCheck?: Camelize<HealthCheckWire>;
};

/** Options of servers.restart. */
export type ServerRestartParams = Camelize<Omit<Body<"server:restart">, "namespace" | "name" | "slug" | "wait">>;

/** A managed server. */
export interface ServerInfo {
  slug: string;
  status: ServerStatus;
  url?: string;
  port?: number;
  exitCode?: number;
  error?: string;
}

/** The result of servers.start, stop and restart. */
export interface ServerResult extends ServerInfo {
  /** How long the task waited for the server, in ms. */
  waitedMs?: number;
  /** What the task did: "started", "restarted", "unchanged", "stopped" or "absent". */
  action?: string;
}

/** The result of a files method. */
export interface FilesResult {
  written: number;
  deleted: number;
  /** Bytes written (decoded). */
  bytes: number;
}

/** One entry of files.batchWrite. */
export interface BatchFile {
  path: string;
  /** Default "write". */
  operation?: "write" | "delete";
  /** Text, or bytes (sent base64-encoded). */
  content?: string | Uint8Array;
}

/** Options of commands.run: the command:run payload of the OpenAPI document, camelCased. */
export type CommandParams = Camelize<Omit<Body<"command:run">, "namespace" | "name" | "ensure">>;

/** The result of commands.run. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout or stderr was cut at 64 KiB. */
  truncated: boolean;
  durationMs?: number;
}

/** Options of the env methods. */
export interface EnvOptions {
  /** The env file, relative to the sandbox's root (default ".env"). */
  file?: string;
}

/** What the sandbox's methods share. */
export interface Ctx {
  t: Transport;
  namespace: string;
  name: string;
}

export function projectBody(c: Ctx): { namespace: string; name: string } {
  return { namespace: c.namespace, name: c.name };
}

export function projectPath(c: Ctx, tail = ""): string {
  return `/projects/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}${tail}`;
}

function toServer(w: ServerWire): ServerResult {
  const r: ServerResult = { slug: w.slug, status: w.status as ServerStatus };
  if (w.url) r.url = w.url;
  if (w.port) r.port = w.port;
  if (typeof w.exit_code === "number") r.exitCode = w.exit_code;
  if (w.error) r.error = w.error;
  const x = w as Result<"server:start">;
  if (typeof x.waited_ms === "number") r.waitedMs = x.waited_ms;
  if (x.action) r.action = x.action;
  return r;
}

const one = <T>(rs: T[]): T => rs[0] as T;

/** Servers of a sandbox (sandbox.servers). */
export class Servers {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Starts a server (or leaves the same one running, or restarts it if it stopped or failed) and resolves once it is ready, or running with waitFor: "running". */
  start(p: ServerStartParams, o: TaskOptions & NoWait): Promise<TaskHandle<ServerResult>>;
  start(p: ServerStartParams, o?: TaskOptions): Promise<ServerResult>;
  start(p: ServerStartParams, o: TaskOptions = {}): Promise<ServerResult | TaskHandle<ServerResult>> {
    const hc = p.healthCheck;
    const body: Body<"server:start"> = {
      ...projectBody(this.#c),
      slug: p.slug,
      command: p.command,
      install: p.install,
      path: p.path,
      env: p.env,
      env_file: p.envFile,
      port: p.port,
      restart_policy: p.restartPolicy,
      max_restarts: p.maxRestarts,
      health_check: hc && { path: hc.path, interval_ms: hc.intervalMs, timeout_ms: hc.timeoutMs, delay_ms: hc.delayMs },
      wait_for: p.waitFor,
      wait_timeout_ms: p.waitTimeoutMs,
    };
    return run(this.#c.t, "server:start", body, o, (rs: Result<"server:start">[]) => toServer(one(rs)));
  }

  /** Stops a server. */
  stop(slug: string, o: TaskOptions & NoWait): Promise<TaskHandle<ServerResult>>;
  stop(slug: string, o?: TaskOptions): Promise<ServerResult>;
  stop(slug: string, o: TaskOptions = {}): Promise<ServerResult | TaskHandle<ServerResult>> {
    const body: Body<"server:stop"> = { ...projectBody(this.#c), slug };
    return run(this.#c.t, "server:stop", body, o, (rs: Result<"server:stop">[]) => toServer(one(rs)));
  }

  /** Restarts a server and resolves once it is ready again (by default). */
  restart(slug: string, o: TaskOptions & ServerRestartParams & NoWait): Promise<TaskHandle<ServerResult>>;
  restart(slug: string, o?: TaskOptions & ServerRestartParams): Promise<ServerResult>;
  restart(slug: string, o: TaskOptions & ServerRestartParams = {}): Promise<ServerResult | TaskHandle<ServerResult>> {
    const body: Body<"server:restart"> = { ...projectBody(this.#c), slug, wait_for: o.waitFor, wait_timeout_ms: o.waitTimeoutMs };
    return run(this.#c.t, "server:restart", body, o, (rs: Result<"server:restart">[]) => toServer(one(rs)));
  }

  /** The server as the sandbox's daemon reports it now (no task); null when there is no such server or no sandbox. */
  async retrieve(slug: string, o: RequestOptions = {}): Promise<ServerInfo | null> {
    try {
      const { body } = await this.#c.t.json<ServerWire>({ method: "GET", path: projectPath(this.#c, `/servers/${encodeURIComponent(slug)}`), signal: o.signal, retry: true });
      return toServer(body);
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }
}

/** encodeContent turns text or bytes into a file of a files:write payload. */
function encodeContent(path: string, content: string | Uint8Array): FileWire {
  if (typeof content === "string") return { path, content };
  return { path, content: base64(content), encoding: "base64" };
}

function base64(b: Uint8Array): string {
  const B = (globalThis as { Buffer?: { from(b: Uint8Array): { toString(enc: string): string } } }).Buffer;
  if (B) return B.from(b).toString("base64");
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function sumFiles(rs: Result<"files:write">[]): FilesResult {
  return rs.reduce<FilesResult>((a, r) => ({ written: a.written + r.written, deleted: a.deleted + r.deleted, bytes: a.bytes + r.bytes }), { written: 0, deleted: 0, bytes: 0 });
}

/** Files of a sandbox (sandbox.files). Paths are relative to the sandbox's root or absolute inside it. */
export class Files {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Writes one file: a string as UTF-8 text, a Uint8Array byte for byte. */
  write(path: string, content: string | Uint8Array, o: TaskOptions & NoWait): Promise<TaskHandle<FilesResult>>;
  write(path: string, content: string | Uint8Array, o?: TaskOptions): Promise<FilesResult>;
  write(path: string, content: string | Uint8Array, o: TaskOptions = {}): Promise<FilesResult | TaskHandle<FilesResult>> {
    return this.#send([encodeContent(path, content)], o);
  }

  /** Writes and deletes several files in one task (a set above the API's per-task limits is split into several tasks, all waited for). */
  batchWrite(files: BatchFile[], o: TaskOptions & NoWait): Promise<TaskHandle<FilesResult>>;
  batchWrite(files: BatchFile[], o?: TaskOptions): Promise<FilesResult>;
  batchWrite(files: BatchFile[], o: TaskOptions = {}): Promise<FilesResult | TaskHandle<FilesResult>> {
    return this.#send(
      files.map((f) => (f.operation === "delete" ? { path: f.path, delete: true } : encodeContent(f.path, f.content ?? ""))),
      o,
    );
  }

  /** Deletes a file. */
  delete(path: string, o: TaskOptions & NoWait): Promise<TaskHandle<FilesResult>>;
  delete(path: string, o?: TaskOptions): Promise<FilesResult>;
  delete(path: string, o: TaskOptions = {}): Promise<FilesResult | TaskHandle<FilesResult>> {
    return this.#send([{ path, delete: true }], o);
  }

  /** Reads a file as UTF-8 text (no task). Throws NotFoundError when it does not exist. */
  async read(path: string, o: RequestOptions = {}): Promise<string> {
    const { body } = await this.#c.t.json<FileContentWire>({ method: "GET", path: projectPath(this.#c, "/files"), query: { path }, signal: o.signal, retry: true });
    return body.content;
  }

  #send(files: FileWire[], o: TaskOptions): Promise<FilesResult | TaskHandle<FilesResult>> {
    const body: Body<"files:write"> = { ...projectBody(this.#c), files };
    return run(this.#c.t, "files:write", body, o, sumFiles);
  }
}

/** Commands of a sandbox (sandbox.commands). */
export class Commands {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Runs a shell command. A non-zero exit throws TaskFailedError (its exitCode set) unless failOnNonzero is false. */
  run(p: CommandParams, o: TaskOptions & NoWait): Promise<TaskHandle<CommandResult>>;
  run(p: CommandParams, o?: TaskOptions): Promise<CommandResult>;
  run(p: CommandParams, o: TaskOptions = {}): Promise<CommandResult | TaskHandle<CommandResult>> {
    const body: Body<"command:run"> = { ...projectBody(this.#c), command: p.command, cwd: p.cwd, env: p.env, timeout_ms: p.timeoutMs, fail_on_nonzero: p.failOnNonzero };
    return run(this.#c.t, "command:run", body, o, (rs: Result<"command:run">[]) => {
      const r = one(rs);
      const out: CommandResult = { exitCode: r.exit_code, stdout: r.stdout, stderr: r.stderr, truncated: !!(r.stdout_truncated || r.stderr_truncated) };
      if (typeof r.duration_ms === "number") out.durationMs = r.duration_ms;
      return out;
    });
  }
}

/** The env file of a sandbox (sandbox.env). */
export class Env {
  readonly #c: Ctx;
  constructor(c: Ctx) {
    this.#c = c;
  }

  /** Sets variables; resolves with the names set. */
  update(vars: Record<string, string>, o: TaskOptions & EnvOptions & NoWait): Promise<TaskHandle<string[]>>;
  update(vars: Record<string, string>, o?: TaskOptions & EnvOptions): Promise<string[]>;
  update(vars: Record<string, string>, o: TaskOptions & EnvOptions = {}): Promise<string[] | TaskHandle<string[]>> {
    const body: Body<"env:update"> = { ...projectBody(this.#c), file: o.file, set: vars };
    return run(this.#c.t, "env:update", body, o, (rs: Result<"env:update">[]) => one(rs).set ?? []);
  }

  /** Removes variables; resolves with the names removed. */
  remove(keys: string[], o: TaskOptions & EnvOptions & NoWait): Promise<TaskHandle<string[]>>;
  remove(keys: string[], o?: TaskOptions & EnvOptions): Promise<string[]>;
  remove(keys: string[], o: TaskOptions & EnvOptions = {}): Promise<string[] | TaskHandle<string[]>> {
    const body: Body<"env:update"> = { ...projectBody(this.#c), file: o.file, remove: keys };
    return run(this.#c.t, "env:update", body, o, (rs: Result<"env:update">[]) => one(rs).removed ?? []);
  }

  /** The variables of the env file (no task). */
  async retrieve(o: RequestOptions & EnvOptions = {}): Promise<Record<string, string>> {
    const { body } = await this.#c.t.json<EnvWire>({ method: "GET", path: projectPath(this.#c, "/env"), query: { file: o.file ?? ".env" }, signal: o.signal, retry: true });
    return body.env ?? {};
  }
}

type Listener<E> = (e: E) => void;
interface EventMap {
  event: SandboxEvent;
  "server.status_changed": ServerStatusChangedEvent;
  "sandbox.status_changed": SandboxStatusChangedEvent;
  error: unknown;
}

/**
 * A project's sandbox. Its methods are tasks (durable, retried by the
 * worker, one at a time per project) or read-through reads; every one takes
 * an AbortSignal.
 */
export class Sandbox {
  readonly servers: Servers;
  readonly files: Files;
  readonly commands: Commands;
  readonly env: Env;
  readonly #c: Ctx;
  readonly #info: SandboxWire;
  readonly #listeners = new Map<keyof EventMap, Set<Listener<never>>>();
  #sub: AbortController | undefined;

  constructor(t: Transport, info: SandboxWire) {
    this.#c = { t, namespace: info.namespace, name: info.name };
    this.#info = info;
    this.servers = new Servers(this.#c);
    this.files = new Files(this.#c);
    this.commands = new Commands(this.#c);
    this.env = new Env(this.#c);
  }

  /** The gateway's id of the sandbox. */
  get sandboxId(): string {
    return this.#info.sandbox_id;
  }
  /** The wrapper's name for {@link name}. */
  get projectGroupId(): string {
    return this.#info.name;
  }
  /** The wrapper's name for {@link namespace}. */
  get tenantKey(): string {
    return this.#info.namespace;
  }
  get name(): string {
    return this.#info.name;
  }
  get namespace(): string {
    return this.#info.namespace;
  }
  /** The provider of the sandbox, when known. */
  get provider(): string | undefined {
    return this.#info.provider || undefined;
  }
  /** The sandbox's status when this object was made. */
  get status(): string | undefined {
    return this.#info.status || undefined;
  }

  /** True when the server's process is up: status "running" or "ready". False for an unknown server. */
  async isServerRunning(slug: string, o: RequestOptions = {}): Promise<boolean> {
    const s = await this.servers.retrieve(slug, o);
    return s !== null && (s.status === "running" || s.status === "ready");
  }

  /** True when the server exists and is not "stopped" or "failed": up, or on its way up (installing, starting, restarting). */
  async isServerActive(slug: string, o: RequestOptions = {}): Promise<boolean> {
    const s = await this.servers.retrieve(slug, o);
    return s !== null && s.status !== "stopped" && s.status !== "failed";
  }

  /** Destroys the sandbox (ending this object's event subscription first); resolves with false when there was nothing to destroy (which is success). */
  destroy(o: TaskOptions & NoWait): Promise<TaskHandle<boolean>>;
  destroy(o?: TaskOptions): Promise<boolean>;
  destroy(o: TaskOptions = {}): Promise<boolean | TaskHandle<boolean>> {
    this.unsubscribeFromEvents();
    const body: Body<"sandbox:destroy"> = projectBody(this.#c);
    return run(this.#c.t, "sandbox:destroy", body, o, (rs: Result<"sandbox:destroy">[]) => one(rs).destroyed);
  }

  /**
   * The project's events as an async iterable, reconnecting by itself with
   * Last-Event-ID: none is lost or repeated across a drop. Break out of the
   * loop or abort the signal to stop.
   */
  events(o: EventsOptions = {}): AsyncGenerator<SandboxEvent, void, undefined> {
    return streamEvents(this.#c.t, projectPath(this.#c, "/events"), o);
  }

  /** Adds a listener: "event" gets every event, "server.status_changed"/"sandbox.status_changed" those of the type, "error" connection failures (the subscription keeps reconnecting) and a final error that ends it. */
  on<K extends keyof EventMap>(name: K, fn: Listener<EventMap[K]>): this {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(fn as Listener<never>);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off<K extends keyof EventMap>(name: K, fn: Listener<EventMap[K]>): this {
    this.#listeners.get(name)?.delete(fn as Listener<never>);
    return this;
  }

  /**
   * Starts delivering the project's events to the listeners added with
   * {@link on}. Resolves once the stream is open, so every event after
   * that point is delivered; a second call while subscribed does nothing.
   */
  subscribeToEvents(o: { since?: string; signal?: AbortSignal } = {}): Promise<void> {
    if (this.#sub) return Promise.resolve();
    const ctl = new AbortController();
    this.#sub = ctl;
    if (o.signal) o.signal.addEventListener("abort", () => this.unsubscribeFromEvents(), { once: true });
    return new Promise<void>((resolve) => {
      const it = streamEvents(this.#c.t, projectPath(this.#c, "/events"), { ...(o.since === undefined ? {} : { since: o.since }), signal: ctl.signal }, {
        onOpen: resolve,
        onError: (err) => this.#emit("error", err),
      });
      void (async () => {
        try {
          for await (const e of it) {
            this.#emit("event", e);
            this.#emit(e.type, e as never);
          }
        } catch (err) {
          this.#emit("error", err);
        } finally {
          if (this.#sub === ctl) this.#sub = undefined;
          resolve();
        }
      })();
    });
  }

  /** Stops the subscription started by {@link subscribeToEvents}. */
  unsubscribeFromEvents(): void {
    this.#sub?.abort();
    this.#sub = undefined;
  }

  #emit<K extends keyof EventMap>(name: K, e: EventMap[K]): void {
    for (const fn of this.#listeners.get(name) ?? []) {
      try {
        (fn as Listener<EventMap[K]>)(e);
      } catch (err) {
        if (name !== "error") this.#emit("error", err);
      }
    }
  }
}
