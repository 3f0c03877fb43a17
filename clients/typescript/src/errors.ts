/**
 * The errors the client throws. Every one is a {@link SandboxqError}; check
 * the kind with `instanceof` and read the data from the instance.
 *
 * - {@link ApiError}: the API answered with an HTTP error (status, body).
 *   - {@link ValidationError}: 400, with the offending `field`.
 *   - {@link NotFoundError}: 404 (unknown task, project, file, route).
 * - {@link TaskFailedError}: the task ended archived (failed permanently,
 *   ran out of retries, or was cancelled).
 * - {@link TimeoutError}: a request or a wait outlasted its time limit.
 * - {@link ConnectionError}: the worker could not be reached at its URL.
 */

/** The base class of every error of this package. */
export class SandboxqError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The JSON body of an API error: `{error, field}`. */
export interface ErrorBody {
  error: string;
  field?: string;
  [key: string]: unknown;
}

/** The API answered with an HTTP error status. */
export class ApiError extends SandboxqError {
  /** The HTTP status. */
  readonly status: number;
  /** The decoded JSON body ({error, field}), or {error: text} if it was not JSON. */
  readonly body: ErrorBody;
  /** The method and URL of the request. */
  readonly method: string;
  readonly url: string;

  constructor(status: number, body: ErrorBody, method: string, url: string) {
    super(`${method} ${url}: HTTP ${status}: ${body.error}`);
    this.status = status;
    this.body = body;
    this.method = method;
    this.url = url;
  }
}

/** 400: the request (usually a task payload) is invalid. */
export class ValidationError extends ApiError {
  /** The offending input, e.g. "slug" or "files[2].path" ("" when none is named). */
  readonly field: string;

  constructor(status: number, body: ErrorBody, method: string, url: string) {
    super(status, body, method, url);
    this.field = body.field ?? "";
  }
}

/** 404: no such task, project, sandbox, server, file or route. */
export class NotFoundError extends ApiError {}

/** A task ended archived: it failed permanently, ran out of retries, or was cancelled. */
export class TaskFailedError extends SandboxqError {
  readonly taskId: string;
  readonly queue: string;
  readonly type: string;
  /** The task's last error message. */
  readonly error: string;
  /** How many times the task ran. */
  readonly attempts: number;
  /** True when the task was cancelled rather than failed. */
  readonly cancelled: boolean;
  /** What the handler wrote before it failed (the wire JSON, snake_case), if anything. */
  readonly result: unknown;
  /** The exit code in the result (a failed command or server), if there is one. */
  readonly exitCode: number | undefined;

  constructor(t: { id: string; queue: string; type: string; error: string; attempts: number; cancelled: boolean; result: unknown }) {
    const what = t.cancelled ? "was cancelled" : `failed after ${t.attempts} attempt${t.attempts === 1 ? "" : "s"}: ${t.error}`;
    super(`task ${t.type} ${t.id} ${what}`);
    this.taskId = t.id;
    this.queue = t.queue;
    this.type = t.type;
    this.error = t.error;
    this.attempts = t.attempts;
    this.cancelled = t.cancelled;
    this.result = t.result;
    const code = (t.result as { exit_code?: unknown } | null | undefined)?.exit_code;
    this.exitCode = typeof code === "number" ? code : undefined;
  }
}

/** A request or a wait outlasted its time limit. The task, if any, may still run. */
export class TimeoutError extends SandboxqError {
  /** The limit that was reached, in milliseconds. */
  readonly timeoutMs: number;

  constructor(message: string, timeoutMs: number) {
    super(message);
    this.timeoutMs = timeoutMs;
  }
}

/** The worker did not answer at all (connection refused, DNS, reset). */
export class ConnectionError extends SandboxqError {
  /** The URL that was tried. */
  readonly url: string;

  constructor(url: string, cause: unknown) {
    const why = describeCause(cause);
    super(`cannot reach the sandboxq worker at ${url}${why ? `: ${why}` : ""} (is the worker running, and is the client's url right?)`, { cause });
    this.url = url;
  }
}

function describeCause(err: unknown): string {
  let e: unknown = err;
  // fetch wraps the socket error: TypeError("fetch failed", {cause: Error ECONNREFUSED}).
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" && !e.message.includes(code) ? `${code} ${e.message}` : e.message;
  }
  return e === undefined ? "" : String(e);
}
