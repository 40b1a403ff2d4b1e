import type { Block } from '../guard/verdict.js';
import { loadOptional } from './optional.js';

/**
 * OpenTelemetry, when the application has `@opentelemetry/api` installed: a refused or bypassed
 * request's active span gets `namespace_read_only.namespace`, `.outcome` and `.reason`. Nothing
 * else is ever asked of the API, and only for those requests; without an active span (no SDK,
 * or no span around the request) that is one lookup in the current context.
 */

interface Span {
  isRecording(): boolean;
  setAttributes(attributes: Record<string, string>): unknown;
}

interface TraceApi {
  trace: { getActiveSpan(): Span | undefined };
}

export type SpanOutcome = 'refused' | 'bypassed';

/** Sets the attributes on the active span, if any. */
export type SpanAnnotator = (outcome: SpanOutcome, block: Block) => void;

let annotator: SpanAnnotator | null | undefined;

/**
 * The annotator, or `null` when `@opentelemetry/api` is not installed. Loaded once per process,
 * when the first guard is created; a copy that cannot be loaded counts as absent.
 */
export function spanAnnotator(): SpanAnnotator | null {
  if (annotator !== undefined) return annotator;
  let api: TraceApi | null = null;
  try {
    api = loadOptional<TraceApi>('@opentelemetry/api');
  } catch {
    api = null;
  }
  const trace = api?.trace;
  if (typeof trace?.getActiveSpan !== 'function') {
    annotator = null;
    return annotator;
  }
  annotator = (outcome, block) => {
    try {
      const span = trace.getActiveSpan();
      if (span === undefined || !span.isRecording()) return;
      span.setAttributes({
        ...(block.namespace !== null && { 'namespace_read_only.namespace': block.namespace }),
        'namespace_read_only.outcome': outcome,
        'namespace_read_only.reason': block.reason,
      });
    } catch {
      // tracing is never worth a different answer
    }
  };
  return annotator;
}
