/** The public surface: everything a user imports, and nothing else. */

export { type BypassTokenOptions, createBypassToken } from './bypass/token.js';
export {
  AuditWriteError,
  FenceTimeoutError,
  NamespaceNameError,
  NamespaceReadOnlyError,
  NotInMaintenanceError,
  OptionsError,
  type ProcessInfo,
  REFUSAL_CODES,
  RedisTransactionError,
  type RefusalCode,
  type RefusalReason,
  StateValueError,
  StoreReadError,
  StoreTimeoutError,
} from './errors.js';
export { InflightWrites } from './fence/inflight.js';
export type { WaitOptions, WaitResult } from './fence/wait.js';
export type { Checks } from './guard/checks.js';
export {
  type NamespaceReadOnlyMiddleware,
  type NextFunction,
  namespaceReadOnly,
} from './guard/middleware.js';
export type { UpgradeCheck, UpgradeOptions } from './guard/upgrade.js';
export type { Logger } from './logger.js';
export type { MetricsOptions, MetricsRegistry } from './observe/metrics.js';
export type { NamespaceReadOnlyOptions, ResolveId } from './options.js';
export type { AllowRule, RouteParams } from './routing/allowlist.js';
export { type GitlabAllowlistOptions, gitlabAllowlist } from './routing/gitlab-allowlist.js';
export { gitlabRoutes } from './routing/gitlab-routes.js';
export { patternRoutes } from './routing/pattern-routes.js';
export type { IdKind, NamespaceRoutes, Target } from './routing/target.js';
export { INSTANCE, type NamespaceState, type StateInput } from './state/values.js';
export { MemoryStateStore, type MemoryStateStoreOptions } from './stores/memory.js';
export type { LiveProcess, ProcessAnnouncement } from './stores/redis/announce.js';
export type { AuditEntry, AuditOptions } from './stores/redis/audit.js';
export type { RedisClientLike } from './stores/redis/client.js';
export type { RedisStateStoreOptions } from './stores/redis/options.js';
export {
  type EnableOptions,
  RedisStateStore,
  type RedisStateStoreStatus,
} from './stores/redis/store.js';
export type {
  ChangeOptions,
  DeleteOptions,
  SetOptions,
  StateChange,
  StateChangeListener,
  StateChangeVia,
  StateEntry,
  StateStore,
  StoreObservation,
  WriterRegistration,
} from './stores/store.js';
