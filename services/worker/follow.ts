// A worker follows its run's record (a KV watch), so a coordinator restarted with another ROI,
// config or output is served without restarting the workers: before its next task a worker
// re-attaches to the newest epoch (a new job: config, ROI, identity), and the job it replaces
// is closed once the tasks in its hands end.
import * as path from 'node:path';
import type { KV } from '@nats-io/kv';
import {
  type Logger, type Role, type RunRecord, type TaskKind, type TaskMessage, type TesseraConfig, type Scope,
  ConfigError, isRemote, isVirtual, loadConfig, readRun, roleOf, staleness, taskId, watchRun,
} from '../../shared/index.ts';
import type { WorkerJob } from './job.ts';

/** The run's newest record, as the watch delivers it. */
export interface RunFollower {
  latest(): RunRecord | undefined;
  /** Resolves on the next record (or when the signal aborts). */
  changed(signal?: AbortSignal): Promise<void>;
  /** Read the record now (the watch may lag a message that names a newer epoch). */
  refresh(): Promise<RunRecord | undefined>;
  stop(): void;
}

export async function followRun(kv: KV, run: string, log: Logger): Promise<RunFollower> {
  let latest: RunRecord | undefined;
  let wakes: (() => void)[] = [];
  const take = (r: RunRecord) => {
    if (latest && r.epoch < latest.epoch) return;
    latest = r;
    const w = wakes;
    wakes = [];
    for (const f of w) f();
  };
  const stop = await watchRun(kv, run, take, log);
  return {
    latest: () => latest,
    changed: (signal) => new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        signal?.removeEventListener('abort', done);
        resolve();
      };
      wakes.push(done);
      signal?.addEventListener('abort', done, { once: true });
    }),
    refresh: async () => {
      const r = await readRun(kv, run).catch(() => undefined);
      if (r) take(r);
      return latest;
    },
    stop,
  };
}

export const isOver = (r: RunRecord | undefined) => r?.status === 'complete' || r?.status === 'failed';

/** Refuse a run whose input, output or tissue mask lies outside `roots` (none: any path). */
export function confine(r: Pick<RunRecord, "run" | "input" | "output">, roots: readonly string[], mask?: string): void {
  if (!roots.length) return;
  for (const p of mask ? [r.input, r.output, mask] : [r.input, r.output]) {
    // A virtual input is generated, not read from anywhere; a URL input is read over the
    // network with the worker's own credentials, outside any local root.
    if (isVirtual(p) || isRemote(p)) continue;
    const abs = path.resolve(p);
    if (!roots.some((root) => { const rel = path.relative(path.resolve(root), abs); return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel)); })) {
      throw new ConfigError('root', `run "${r.run}" names ${abs}, outside this worker's roots (${roots.join(', ')})`);
    }
  }
}

/** One epoch's job, in use by the tasks in hand: closed once superseded and idle. */
export interface Attachment {
  record: RunRecord;
  config: TesseraConfig;
  job: WorkerJob;
  /** The kinds this role runs in this scope. */
  kinds: readonly string[];
  users: number;
  superseded: boolean;
}

export function use(a: Attachment): () => Promise<void> {
  a.users++;
  return async () => {
    if (--a.users === 0 && a.superseded) await a.job.close();
  };
}

export async function attach(record: RunRecord, role: Role, roots: readonly string[], makeJob: (r: RunRecord, c: TesseraConfig, log: Logger) => Promise<WorkerJob>, log: Logger): Promise<Attachment> {
  confine(record, roots, (record.config as { mask?: { path?: string } } | undefined)?.mask?.path);
  // The record's config is validated like a config file: a worker never trusts it blindly.
  const config = loadConfig({ overrides: record.config as unknown as Record<string, unknown> });
  const job = await makeJob(record, config, log);
  const kinds = job.kinds.map((k) => k.name).filter((k) => roleOf(k as TaskKind) === role);
  log.info({ epoch: record.epoch, scopeEpoch: record.scopeEpoch, identity: record.identity.slice(0, 12), kinds }, 'attached');
  return { record, config, job, kinds, users: 0, superseded: false };
}

/** What a worker does with a task message (see classify). */
export type Verdict =
  | { kind: 'serve' }
  /** Of an older scope than the run's record: terminated and counted. */
  | { kind: 'stale'; why: string; reason: 'identity' | 'epoch' }
  /** Of a newer epoch than this worker knows (or is attached to): handed back after a refresh. */
  | { kind: 'later'; why: string }
  /** Of the current scope, yet not a task of it: terminated. */
  | { kind: 'bad'; why: string };

/**
 * A task message against the run's newest record and the job this worker is attached to. A
 * message is never terminated because this worker lags the record (it is handed back), nor run
 * with a job of another scope.
 */
export function classify(msg: TaskMessage, latest: Scope, attached: { scope: Scope; kinds: readonly string[]; job: Pick<WorkerJob, 'kinds'> }): Verdict {
  const vs = staleness(msg, latest);
  if (vs === 'epoch') return { kind: 'stale', reason: 'epoch', why: `epoch ${msg.epoch} is before the run's scope (epoch ${latest.scopeEpoch})` };
  if (msg.epoch > latest.epoch) return { kind: 'later', why: `epoch ${msg.epoch} is newer than the run record's (${latest.epoch})` };
  if (vs === 'identity') return { kind: 'stale', reason: 'identity', why: `identity ${msg.identity.slice(0, 12)} is not the run's (${latest.identity.slice(0, 12)})` };
  if (attached.scope.epoch < latest.epoch) return { kind: 'later', why: `attached to epoch ${attached.scope.epoch}, the run is at ${latest.epoch}` };
  if (!attached.kinds.includes(msg.kind)) return { kind: 'bad', why: `task kind "${msg.kind}" is not one of ${attached.kinds.join(', ')}` };
  const k = attached.job.kinds.find((x) => x.name === msg.kind)!;
  for (const index of msg.indices) {
    if (index.some((v, a) => v < k.range.lo[a] || v >= k.range.hi[a])) return { kind: 'bad', why: `task ${taskId({ kind: msg.kind, index })} is outside the run's ${msg.kind} grid` };
  }
  return { kind: 'serve' };
}
