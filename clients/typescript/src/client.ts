import { NotFoundError } from "./errors.js";
import { Transport, type ClientOptions, type RequestOptions } from "./http.js";
import { Sandbox, projectPath, type ProjectRef } from "./sandbox.js";
import { run, type NoWait, type TaskHandle, type TaskOptions } from "./tasks.js";
import type { Body, Result, SandboxWire } from "./wire.js";

/** Options of {@link Sandboxq.findOrCreate}: the project, and how to create its sandbox if it has none. */
export type FindOrCreateParams = ProjectRef & {
  /** Lifetime of a new sandbox in ms (default: the provider's). */
  timeout?: number;
  provider?: string;
  templateId?: string;
  metadata?: Record<string, unknown>;
  /** Environment variables of a new sandbox. */
  envs?: Record<string, string>;
};

/** project resolves either naming of a project to sandboxq's (namespace, name). */
export function project(p: ProjectRef): { namespace: string; name: string } {
  if (!p || typeof p !== "object") throw new TypeError("a project is {projectGroupId, tenantKey?} or {name, namespace?}");
  if ("projectGroupId" in p) return { namespace: p.tenantKey ?? "default", name: p.projectGroupId };
  return { namespace: p.namespace ?? "default", name: p.name };
}

/**
 * The sandboxq client: `new Sandboxq({url, token})`, then
 * {@link findOrCreate} or {@link find} a project's {@link Sandbox}.
 */
export class Sandboxq {
  readonly #t: Transport;

  constructor(o: ClientOptions) {
    this.#t = new Transport(o);
  }

  /** The API's base URL (the worker's URL plus /api/v1). */
  get url(): string {
    return this.#t.base;
  }

  /** Finds the project's sandbox or creates it: one sandbox:ensure task, waited for. Concurrent calls for one project share one task. */
  findOrCreate(p: FindOrCreateParams, o: TaskOptions & NoWait): Promise<TaskHandle<Sandbox>>;
  findOrCreate(p: FindOrCreateParams, o?: TaskOptions): Promise<Sandbox>;
  findOrCreate(p: FindOrCreateParams, o: TaskOptions = {}): Promise<Sandbox | TaskHandle<Sandbox>> {
    const id = project(p);
    const body: Body<"sandbox:ensure"> = {
      ...id,
      timeout_ms: p.timeout,
      provider: p.provider,
      template_id: p.templateId,
      metadata: p.metadata,
      envs: p.envs,
    };
    return run(this.#t, "sandbox:ensure", body, o, (rs: Result<"sandbox:ensure">[]) => {
      const r = rs[0] as Result<"sandbox:ensure">;
      return new Sandbox(this.#t, { ...id, sandbox_id: r.sandbox_id, provider: r.provider ?? "", status: r.status });
    });
  }

  /** The project's live sandbox as the gateway knows it now, or null when it has none. */
  async find(p: ProjectRef, o: RequestOptions = {}): Promise<Sandbox | null> {
    const id = project(p);
    try {
      const { body } = await this.#t.json<SandboxWire>({ method: "GET", path: projectPath({ t: this.#t, ...id }, "/sandbox"), signal: o.signal, retry: true });
      return new Sandbox(this.#t, { ...body, namespace: body.namespace || id.namespace, name: body.name || id.name });
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }
}
