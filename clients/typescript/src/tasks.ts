import { TaskFailedError, TimeoutError } from "./errors.js";
import type { RequestOptions, Transport } from "./http.js";
import type { Enqueued, TaskStatus, TaskType } from "./wire.js";

/** Options of every method that runs a task. */
export interface TaskOptions extends RequestOptions {
  /**
   * The Idempotency-Key of the enqueue (default: a random one per call).
   * A call repeated with the same key within 24 h gets the first task
   * back instead of a second one: pass your own to make retries of your
   * own code safe.
   */
  idempotencyKey?: string;
  /** false: return the task's handle as soon as it is enqueued (default true: wait for its result). */
  wait?: boolean;
  /** Bound of the wait for the task's result in ms (default: none; the task's own timeout ends it). A {@link TimeoutError} leaves the task running. */
  timeoutMs?: number;
}

/** {@link TaskOptions} with `wait: false`: the call returns a {@link TaskHandle}. */
export interface NoWait {
  wait: false;
}

/** Options of {@link TaskHandle.result}. */
export interface WaitOptions extends RequestOptions {
  /** Bound of the wait in ms (default: none). */
  timeoutMs?: number;
}

/** An enqueued task. */
export interface TaskHandle<R> {
  readonly id: string;
  readonly queue: string;
  readonly type: TaskType;
  /** No task was created: an equal live task (sandbox:ensure, sandbox:destroy) or the first answer to the same Idempotency-Key was returned. */
  readonly duplicate: boolean;
  /** Every task of the call, in order (files:write splits large sets; otherwise just this one). */
  readonly tasks: ReadonlyArray<{ id: string; queue: string }>;
  /** Waits (long-polling) until the task is done and returns its result; throws {@link TaskFailedError} when it ends archived. */
  result(o?: WaitOptions): Promise<R>;
  /** Cancels the task for good. */
  cancel(o?: RequestOptions): Promise<void>;
}

/** The longest wait one long-poll asks for; the API caps it at 60 s. */
const pollSeconds = 30;

/** newKey returns a random Idempotency-Key. */
export async function newKey(): Promise<string> {
  const c = globalThis.crypto as Crypto | undefined;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  // Node 18 has no global crypto without a flag.
  const mod = (await import("node:" + "crypto")) as { randomUUID(): string };
  return mod.randomUUID();
}

/** enqueue posts one task and returns its handle; map turns the wire results of its tasks into the call's result. */
export async function enqueue<W, R>(t: Transport, type: TaskType, payload: unknown, o: TaskOptions, map: (w: W[]) => R): Promise<TaskHandle<R>> {
  const key = o.idempotencyKey ?? (await newKey());
  const { body } = await t.json<Enqueued>({
    method: "POST",
    path: `/tasks/${encodeURIComponent(type)}`,
    body: payload,
    headers: { "idempotency-key": key },
    signal: o.signal,
    retry: true,
  });
  const all = body.tasks?.length ? body.tasks.map((x) => ({ id: x.id, queue: x.queue })) : [{ id: body.id, queue: body.queue }];
  return {
    id: body.id,
    queue: body.queue,
    type,
    duplicate: body.duplicate,
    tasks: all,
    async result(w: WaitOptions = {}) {
      const results: W[] = [];
      const deadline = w.timeoutMs === undefined ? undefined : Date.now() + w.timeoutMs;
      for (const x of all) results.push((await waitTask(t, x.queue, x.id, { signal: w.signal, deadline, timeoutMs: w.timeoutMs })) as W);
      return map(results);
    },
    async cancel(c: RequestOptions = {}) {
      for (const x of all) {
        await t.json({ method: "DELETE", path: `/tasks/${encodeURIComponent(x.queue)}/${encodeURIComponent(x.id)}`, signal: c.signal, retry: true });
      }
    },
  };
}

/** run enqueues a task and, unless o.wait is false, waits for its result. */
export async function run<W, R>(t: Transport, type: TaskType, payload: unknown, o: TaskOptions, map: (w: W[]) => R): Promise<R | TaskHandle<R>> {
  const h = await enqueue(t, type, payload, o, map);
  if (o.wait === false) return h;
  return h.result({ signal: o.signal, ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }) });
}

/** waitTask long-polls a task until it is completed (its wire result) or archived (TaskFailedError). */
export async function waitTask(
  t: Transport,
  queue: string,
  id: string,
  o: { signal?: AbortSignal | undefined; deadline?: number | undefined; timeoutMs?: number | undefined },
): Promise<unknown> {
  for (;;) {
    let wait = pollSeconds * 1000;
    if (o.deadline !== undefined) {
      wait = Math.min(wait, o.deadline - Date.now());
      if (wait <= 0) throw new TimeoutError(`task ${id} in ${queue} is not done after ${o.timeoutMs} ms (it keeps running)`, o.timeoutMs ?? 0);
    }
    const { body: st } = await t.json<TaskStatus>({
      method: "GET",
      path: `/tasks/${encodeURIComponent(queue)}/${encodeURIComponent(id)}`,
      query: { wait: `${wait}ms` },
      signal: o.signal,
      extraTimeoutMs: wait,
      retry: true,
    });
    if (st.state === "completed") return st.result;
    if (st.state === "archived") {
      throw new TaskFailedError({
        id: st.id,
        queue: st.queue,
        type: st.type,
        error: st.last_error ?? (st.cancelled ? "cancelled" : "archived"),
        attempts: st.retried + 1,
        cancelled: st.cancelled ?? false,
        result: st.result,
      });
    }
  }
}
