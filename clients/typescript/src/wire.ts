// The wire types: what travels over HTTP, snake_case, as the OpenAPI
// document (api/openapi.json, generated into generated/openapi.ts) says.
// The hand-written layer maps them to and from the camelCase types of the
// public API; tsc checks every mapping against these.
import type { components } from "./generated/openapi.js";

type S = components["schemas"];

/** Every task type the API enqueues. */
export type TaskType =
  | "sandbox:ensure"
  | "sandbox:destroy"
  | "files:write"
  | "server:start"
  | "server:stop"
  | "server:restart"
  | "command:run"
  | "env:update"
  | "workflow:run"
  | "maintenance:cleanup"
  | "maintenance:reconcile";

/** The request body of each task type the client sends. */
export interface Bodies {
  "sandbox:ensure": S["SandboxEnsure"];
  "sandbox:destroy": S["SandboxDestroy"];
  "files:write": S["FilesWrite"];
  "server:start": S["ServerStart"];
  "server:stop": S["ServerStop"];
  "server:restart": S["ServerRestart"];
  "command:run": S["CommandRun"];
  "env:update": S["EnvUpdate"];
}

export type Enqueued = S["EnqueueAnswer"];
export type TaskStatus = S["TaskStatus"];
export type EventWire = S["Event"];
export type HealthCheckWire = S["HealthCheck"];
export type FileWire = S["File"] & { encoding?: "utf8" | "base64" };

/** The result of each task type. */
export interface Results {
  "sandbox:ensure": { sandbox_id: string; provider?: string; created: boolean; status: string };
  "sandbox:destroy": { destroyed: boolean; sandbox_id?: string };
  "files:write": { written: number; deleted: number; bytes: number; files?: number; failed?: { path: string; error: string }[]; pending?: string[] };
  "server:start": ServerWire & { waited_ms?: number; action?: string };
  "server:stop": ServerWire & { waited_ms?: number; action?: string };
  "server:restart": ServerWire & { waited_ms?: number; action?: string };
  "command:run": { exit_code: number; stdout: string; stderr: string; stdout_truncated?: boolean; stderr_truncated?: boolean; duration_ms?: number };
  "env:update": { file: string; set?: string[]; removed?: string[] };
}

/** A server as the daemon reports it. */
export interface ServerWire {
  slug: string;
  status: string;
  url?: string;
  port?: number;
  exit_code?: number;
  error?: string;
}

/** GET /projects/{namespace}/{name}/sandbox. */
export interface SandboxWire {
  sandbox_id: string;
  namespace: string;
  name: string;
  provider?: string;
  status?: string;
}

/** GET /projects/{namespace}/{name}/files. */
export interface FileContentWire {
  path: string;
  content: string;
}

/** GET /projects/{namespace}/{name}/env. */
export interface EnvWire {
  file: string;
  env: Record<string, string>;
}
