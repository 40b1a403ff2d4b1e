export type { AllowRule, RouteParams } from './allowlist.js';
export { NamespaceReadOnlyError, OptionsError } from './errors.js';
export {
  FenceTimeoutError,
  type ProcessInfo,
  type WaitOptions,
  type WaitResult,
} from './fence.js';
export { type GitlabAllowlistOptions, gitlabAllowlist } from './gitlab-allowlist.js';
export { gitlabRoutes } from './gitlab-routes.js';
export {
  type NamespaceReadOnlyMiddleware,
  type NextFunction,
  namespaceReadOnly,
} from './middleware.js';
export type { Logger, NamespaceReadOnlyOptions, ResolveId } from './options.js';
export { type IdKind, type NamespaceRoutes, patternRoutes, type Target } from './routes.js';
export { INSTANCE, type NamespaceState, type StateInput } from './state.js';
export type { SetOptions, StateStore, WriterRegistration } from './store.js';
export { MemoryStateStore } from './stores/memory.js';
export {
  type EnableOptions,
  RedisStateStore,
  type RedisStateStoreOptions,
  type RedisStateStoreStatus,
} from './stores/redis.js';
