import { ApiError, ConnectionError, NotFoundError, TimeoutError, ValidationError, type ErrorBody } from "./errors.js";

/** Options of {@link Sandboxq}. */
export interface ClientOptions {
  /** The worker's base URL, e.g. "http://127.0.0.1:8080" (the API lives under /api/v1; a URL that already ends in /api/v1 is taken as is). */
  url: string;
  /** A bearer token of the worker's API_TOKENS (none: no Authorization header). */
  token?: string | undefined;
  /** Time limit of one HTTP request in ms, not counting a long-poll's own wait (default 30 000). */
  timeoutMs?: number;
  /** How often a request that may be repeated safely (a read, or an enqueue with its Idempotency-Key) is retried after a connection error, 502, 503 or 504 (default 2). */
  maxRetries?: number;
  /** The fetch to use (default: the global fetch). */
  fetch?: typeof fetch;
}

/** Options every call takes. */
export interface RequestOptions {
  /** Aborts the call; the promise rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

interface Req {
  method: "GET" | "POST" | "DELETE";
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** Added to the client's per-request time limit (a long-poll's wait). */
  extraTimeoutMs?: number;
  /** Safe to send again after a transient failure. */
  retry?: boolean;
  /** Do not read the body: the caller reads it (an event stream). */
  stream?: boolean;
}

/** Transport sends requests to the API and turns failures into the typed errors. */
export class Transport {
  readonly base: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #maxRetries: number;
  readonly #fetch: typeof fetch;

  constructor(o: ClientOptions) {
    if (!o || typeof o.url !== "string" || o.url === "") throw new TypeError("Sandboxq: options.url is required (the worker's URL, e.g. http://127.0.0.1:8080)");
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw new TypeError(`Sandboxq: options.url ${JSON.stringify(o.url)} is not an absolute URL`);
    }
    const path = u.pathname.replace(/\/+$/, "");
    u.pathname = path.endsWith("/api/v1") ? path : `${path}/api/v1`;
    this.base = u.toString().replace(/\/+$/, "");
    this.#token = o.token || undefined;
    this.#timeoutMs = o.timeoutMs ?? 30_000;
    this.#maxRetries = o.maxRetries ?? 2;
    const f = o.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("Sandboxq: no global fetch (Node 18 or later is required), pass options.fetch");
    this.#fetch = f;
  }

  url(path: string, query?: Record<string, string | undefined>): string {
    const u = new URL(this.base + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, v);
    return u.toString();
  }

  /** json sends the request and returns the decoded JSON answer. */
  async json<T>(r: Req): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await this.send(r);
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T, headers: res.headers };
  }

  /** send sends the request, retrying transient failures of repeatable requests; a non-2xx answer throws. */
  async send(r: Req): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#once(r);
      } catch (err) {
        if (!r.retry || attempt >= this.#maxRetries || !transient(err) || r.signal?.aborted) throw err;
        await sleep(Math.random() * 250 * 2 ** attempt + 50, r.signal);
      }
    }
  }

  async #once(r: Req): Promise<Response> {
    const url = this.url(r.path, r.query);
    const headers: Record<string, string> = { accept: r.stream ? "text/event-stream" : "application/json", ...r.headers };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    let body: string | undefined;
    if (r.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(r.body);
    }
    const limit = this.#timeoutMs + (r.extraTimeoutMs ?? 0);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new TimeoutError(`${r.method} ${url}: no answer within ${limit} ms`, limit)), limit);
    const unlink = link(r.signal, ctl);
    const release = () => {
      clearTimeout(timer);
      unlink();
    };
    let res: Response;
    try {
      res = await this.#fetch(url, { method: r.method, headers, body, signal: ctl.signal });
    } catch (err) {
      release();
      if (ctl.signal.aborted) throw ctl.signal.reason;
      throw new ConnectionError(url, err);
    }
    if (r.stream && res.ok) {
      // The caller owns the body from here; only its own signal ends it.
      clearTimeout(timer);
      return res;
    }
    try {
      if (!res.ok) throw await httpError(res, r.method, url);
      const text = await res.text();
      return new Response(text, { status: res.status, headers: res.headers });
    } catch (err) {
      if (ctl.signal.aborted) throw ctl.signal.reason;
      throw err;
    } finally {
      release();
    }
  }
}

async function httpError(res: Response, method: string, url: string): Promise<ApiError> {
  const text = await res.text();
  let body: ErrorBody;
  try {
    const v = JSON.parse(text) as unknown;
    body = v && typeof v === "object" && typeof (v as ErrorBody).error === "string" ? (v as ErrorBody) : { error: text };
  } catch {
    body = { error: text || res.statusText };
  }
  if (res.status === 400) return new ValidationError(res.status, body, method, url);
  if (res.status === 404) return new NotFoundError(res.status, body, method, url);
  return new ApiError(res.status, body, method, url);
}

function transient(err: unknown): boolean {
  if (err instanceof ConnectionError) return true;
  // 409: a request with the same Idempotency-Key is still being answered.
  return err instanceof ApiError && [409, 502, 503, 504].includes(err.status);
}

/** link aborts ctl when signal aborts; the returned function undoes it. */
export function link(signal: AbortSignal | undefined, ctl: AbortController): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    ctl.abort(signal.reason);
    return () => {};
  }
  const onAbort = () => ctl.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** sleep waits ms, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
