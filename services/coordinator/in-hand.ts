// The vocabulary the coordinator's transport parts share (executor.ts and its publisher, intake
// and give-up): the options, the counters, the tasks in hand, and how messages are sized and
// parsed — a leaf, so that the parts import it and not each other.
import type { NatsConnection } from '@nats-io/nats-core';
import type { JsMsg } from '@nats-io/jetstream';
import { type Logger, type Role, type Expect, type RunNames, type TesseraConfig, type Scope, MAX_BATCH } from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';

export interface ExecutorStats {
  /** Tasks published. */
  published: number;
  /** Task messages published (several quick tasks travel in one, see nats.batch). */
  messages: number;
  /** Results for tasks not in hand (a task that ran twice): ignored. */
  duplicates: number;
  /** Tasks failed because every delivery died with its worker (max deliveries reached). */
  lost: number;
  /** Bad messages dropped. */
  rejected: number;
  /** Results of another scope (another identity, or an epoch before the scope began), by reason: never recorded. */
  stale: { identity: number; epoch: number };
  /** Processes that reported results, per role (distinct `worker` fields: several mergers share the border tasks). */
  senders: Record<Role, number>;
}

export interface BusExecutorOptions {
  nc: NatsConnection;
  names: RunNames;
  expect: Expect;
  nats: TesseraConfig['nats'];
  /** This coordinator's start number (part of every message id) and its scope's identity and first epoch. */
  scope: Scope;
  log: Logger;
  signal?: AbortSignal;
  metrics?: CoordinatorMetrics;
  /** Awaited before a result settles its task (the coordinator's lease check): a throw aborts nothing here, it fails the task. */
  beforeSettle?: () => Promise<void>;
}

/** A task handed to exec() and not yet settled. */
export interface Waiter {
  kind: string;
  resolve: (stats: Record<string, number>) => void;
  reject: (err: unknown) => void;
  /** Published (counted in its kind's tasks out). */
  sent?: boolean;
}

/** The tasks in hand, shared by the three parts: taking one settles it exactly once. */
export class InHand {
  readonly waiting = new Map<string, Waiter>();
  /** Tasks published and not yet settled, per kind. */
  readonly out = new Map<string, number>();
  take(id: string): Waiter | undefined {
    const w = this.waiting.get(id);
    if (!w) return undefined;
    this.waiting.delete(id);
    if (w.sent) this.out.set(w.kind, this.out.get(w.kind)! - 1);
    return w;
  }
}

/**
 * How long a part-filled message of a kind whose tasks are out waits for more tasks (the
 * results of those in flight free the slots that fill it): long beside a quick task's round trip,
 * nothing beside the second of work a full message carries.
 */
export const BATCH_HOLD_MS = 20;

/** Parse a message; a bad one is logged, terminated (never redelivered) and counted. */
export function parseOr<T>(m: JsMsg, parse: () => T, log: Logger, stats: { rejected: number }): T | undefined {
  try {
    return parse();
  } catch (err) {
    stats.rejected++;
    log.warn({ subject: m.subject, err: (err as Error).message }, 'message rejected');
    m.term();
    return undefined;
  }
}

/**
 * How many tasks of a kind go in one message: about `batchSeconds` of work at the kind's mean
 * task time measured so far (one until a result came back), at most `nats.batch` and at most
 * inFlight / 8, so that at least eight messages are out for the workers to share.
 */
export function batchSize(meanMs: number | undefined, n: Pick<TesseraConfig['nats'], 'batch' | 'batchSeconds' | 'inFlight'>): number {
  const cap = Math.max(1, Math.min(n.batch, MAX_BATCH, Math.floor(n.inFlight / 8)));
  if (meanMs === undefined) return 1;
  return Math.max(1, Math.min(cap, Math.floor((n.batchSeconds * 1000) / Math.max(meanMs, 1e-3))));
}
