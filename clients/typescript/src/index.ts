/**
 * @sandboxq/client — the typed TypeScript client of sandboxq's HTTP API.
 *
 * ```ts
 * import { Sandboxq } from "@sandboxq/client";
 * const sq = new Sandboxq({ url: "http://127.0.0.1:8080", token: process.env.SANDBOXQ_TOKEN });
 * const sandbox = await sq.findOrCreate({ projectGroupId: "proj_123", tenantKey: "user_456" });
 * const web = await sandbox.servers.start({ slug: "web", command: "npm run dev", path: "/app" });
 * ```
 *
 * @packageDocumentation
 */
export { Sandboxq, project, type FindOrCreateParams } from "./client.js";
export {
  Sandbox,
  Servers,
  Files,
  Commands,
  Env,
  type ProjectRef,
  type ServerStartParams,
  type ServerRestartParams,
  type ServerInfo,
  type ServerResult,
  type FilesResult,
  type BatchFile,
  type CommandParams,
  type CommandResult,
  type EnvOptions,
  type Camelize,
} from "./sandbox.js";
export type { ClientOptions, RequestOptions } from "./http.js";
export type { TaskOptions, TaskHandle, NoWait, WaitOptions } from "./tasks.js";
export type { SandboxEvent, ServerStatusChangedEvent, SandboxStatusChangedEvent, ServerStatus, SandboxStatus, EventsOptions } from "./events.js";
export { SandboxqError, ApiError, ValidationError, NotFoundError, TaskFailedError, TimeoutError, ConnectionError, type ErrorBody } from "./errors.js";
export type { components as WireComponents, paths as WirePaths } from "./generated/openapi.js";
