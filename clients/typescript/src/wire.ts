// The wire types: what travels over HTTP, snake_case, exactly as the
// OpenAPI document (api/openapi.json, generated into generated/openapi.ts)
// says. Each task type's request body is the schema of its own literal
// path (POST /tasks/server:start), and its result the result of its member
// of the Task union, so tsc checks every mapping of the hand-written layer
// against the document.
import type { components, paths } from "./generated/openapi.js";

type S = components["schemas"];

/** Every task the API reads, discriminated by type. */
export type TaskStatus = S["Task"];

/** Every task type the API enqueues. */
export type TaskType = TaskStatus["type"];

/** The request body of a task type: the schema of POST /tasks/{that type}. */
export type Body<T extends TaskType> = `/tasks/${T}` extends keyof paths
  ? paths[`/tasks/${T}`] extends { post: { requestBody?: { content: { "application/json": infer B } } } }
    ? B
    : never
  : never;

/** The result of a task type. */
export type Result<T extends TaskType> = NonNullable<Extract<TaskStatus, { type: T }>["result"]>;

export type Enqueued = S["EnqueueAnswer"];
export type EventWire = S["Event"];
export type HealthCheckWire = S["HealthCheck"];
export type FileWire = S["File"];
export type ServerWire = S["ServerView"] | Result<"server:start">;
export type SandboxWire = S["SandboxView"];
export type FileContentWire = S["FileView"];
export type EnvWire = S["EnvView"];
