// What travels on the bus: ids, coordinates and counters, never voxels or paths. Every message
// is parsed and validated where it enters; a bad one is a MessageError (permanent: the same
// bytes fail the same way), so a service logs it and drops it instead of crashing or looping.
import type { Box, Vec3 } from '../geometry/box.ts';
import type { TesseraConfig } from '../config/config.ts';
import { MessageError } from '../errors.ts';

/** A run's state as run.json and the run record say it (the same words as shared/run/output.ts). */
export type RunStatus = 'running' | 'complete' | 'failed' | 'interrupted';

/**
 * One delivery: one or more tasks of one kind (quick tasks travel several to a message, see
 * nats.batch). The message is the unit of delivery, acknowledgement and redelivery.
 */
export interface TaskMessage {
  v: 1;
  run: string;
  kind: string;
  /** Block indices of the tasks in their kind's grid, in the order they run. */
  indices: Vec3[];
  /** Run identity hash the tasks were published for (see RunRecord.identity). */
  identity: string;
  /** The coordinator start that published it: with `identity`, tells a current task from a stale one. */
  epoch: number;
}

/** What became of one task of a message. */
export interface TaskOutcome {
  index: Vec3;
  ok: boolean;
  /** The task's counters (summed into the report). */
  stats: Record<string, number>;
  /** Milliseconds the task ran on the worker. */
  ms: number;
  /** The failure's message: names file and chunk. */
  error?: string;
}

/** The outcomes of one task message's tasks, published once all of them ran. */
export interface ResultMessage {
  v: 1;
  run: string;
  kind: string;
  results: TaskOutcome[];
  /** The task message's identity and epoch, echoed: the coordinator records only results of its scope. */
  identity: string;
  epoch: number;
  /** Which process ran it ("host/pid") and on which delivery. */
  worker: string;
  delivery: number;
}

/** Tasks per message at most, whatever the config says (a message stays a few kB). */
export const MAX_BATCH = 1024;

/** The run as registered in the KV bucket: what a worker needs to attach to it. */
export interface RunRecord {
  v: 1;
  run: string;
  input: string;
  output: string;
  roi: Pick<Box, 'begin' | 'end'>;
  /** The resolved config (validated again by whoever reads it). */
  config: TesseraConfig;
  /** Run identity hash: config keys that change results + model checksums. */
  identity: string;
  epoch: number;
  /**
   * The epoch at which the current scope began: identity, ROI and output generation unchanged
   * since. Tasks and results of an earlier epoch of the same scope are still good (a restarted
   * coordinator records them); anything older is stale.
   */
  scopeEpoch: number;
  status: RunStatus;
  coordinator: string;
  updatedAt: string;
  /** Per kind: done / total / failed, refreshed by the coordinator every few seconds. */
  progress?: Record<string, { done: number; total: number; failed: number }>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encode(m: TaskMessage | ResultMessage | RunRecord): Uint8Array {
  return enc.encode(JSON.stringify(m));
}

function parseObject(subject: string, data: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(data));
  } catch {
    throw new MessageError(subject, `not JSON (${data.length} bytes)`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new MessageError(subject, 'not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.v !== 1) throw new MessageError(subject, `unknown message version ${JSON.stringify(o.v)}`);
  return o;
}

function str(subject: string, o: Record<string, unknown>, key: string): string {
  if (typeof o[key] !== 'string' || !(o[key] as string).length) throw new MessageError(subject, `${key} must be a non-empty string`);
  return o[key] as string;
}

function int(subject: string, o: Record<string, unknown>, key: string, min = 0): number {
  const x = o[key];
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) throw new MessageError(subject, `${key} must be an integer ≥ ${min}`);
  return x;
}

function isVec3(x: unknown): x is Vec3 {
  return Array.isArray(x) && x.length === 3 && x.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0);
}

function vec3(subject: string, o: Record<string, unknown>, key: string): Vec3 {
  const x = o[key];
  if (!isVec3(x)) throw new MessageError(subject, `${key} must be three non-negative integers`);
  return [x[0], x[1], x[2]];
}

/** A non-empty list of at most MAX_BATCH items, each checked by `item`. */
function list<T>(subject: string, o: Record<string, unknown>, key: string, item: (x: unknown, i: number) => T): T[] {
  const x = o[key];
  if (!Array.isArray(x) || x.length === 0 || x.length > MAX_BATCH) throw new MessageError(subject, `${key} must be a list of 1–${MAX_BATCH} entries`);
  return x.map(item);
}

/**
 * What the reader expects: its run, and the task kinds it serves. A worker passes no kinds: a
 * task's kind is checked against the scope the task is of (another scope has other kinds).
 */
export interface Expect {
  run: string;
  kinds?: readonly string[];
}

function common(subject: string, o: Record<string, unknown>, e: Expect): { run: string; kind: string } {
  const run = str(subject, o, 'run');
  if (run !== e.run) throw new MessageError(subject, `belongs to run "${run}", not "${e.run}"`);
  const kind = str(subject, o, 'kind');
  if (e.kinds && !e.kinds.includes(kind)) throw new MessageError(subject, `task kind "${kind}" is not one of ${e.kinds.join(', ')}`);
  return { run, kind };
}

export function parseTask(subject: string, data: Uint8Array, e: Expect): TaskMessage {
  const o = parseObject(subject, data);
  const indices = list(subject, o, 'indices', (x, i) => {
    if (!isVec3(x)) throw new MessageError(subject, `indices[${i}] must be three non-negative integers`);
    return [x[0], x[1], x[2]] as Vec3;
  });
  return { v: 1, ...common(subject, o, e), indices, identity: str(subject, o, 'identity'), epoch: int(subject, o, 'epoch') };
}

function outcome(subject: string, x: unknown, i: number): TaskOutcome {
  const where = `${subject} results[${i}]`;
  if (!x || typeof x !== 'object' || Array.isArray(x)) throw new MessageError(where, 'not a JSON object');
  const o = x as Record<string, unknown>;
  if (typeof o.ok !== 'boolean') throw new MessageError(where, 'ok must be true or false');
  const stats = o.stats;
  if (!stats || typeof stats !== 'object' || Array.isArray(stats) || !Object.values(stats).every((n) => typeof n === 'number' && Number.isFinite(n))) {
    throw new MessageError(where, 'stats must be an object of finite numbers');
  }
  if (typeof o.ms !== 'number' || !(o.ms >= 0)) throw new MessageError(where, 'ms must be a number ≥ 0');
  if (!o.ok && typeof o.error !== 'string') throw new MessageError(where, 'a failure needs its error');
  return {
    index: vec3(where, o, 'index'), ok: o.ok, stats: stats as Record<string, number>, ms: o.ms,
    ...(typeof o.error === 'string' ? { error: o.error } : {}),
  };
}

export function parseResult(subject: string, data: Uint8Array, e: Expect): ResultMessage {
  const o = parseObject(subject, data);
  const base = common(subject, o, e);
  const results = list(subject, o, 'results', (x, i) => outcome(subject, x, i));
  return {
    v: 1, ...base, results, identity: str(subject, o, 'identity'), epoch: int(subject, o, 'epoch'),
    worker: str(subject, o, 'worker'), delivery: int(subject, o, 'delivery', 1),
  };
}

const STATUSES: readonly RunStatus[] = ['running', 'complete', 'failed', 'interrupted'];

export function parseRunRecord(key: string, data: Uint8Array): RunRecord {
  const o = parseObject(key, data);
  const run = str(key, o, 'run');
  const roi = o.roi as Record<string, unknown> | undefined;
  if (!roi || typeof roi !== 'object') throw new MessageError(key, 'roi must be {begin, end}');
  if (!o.config || typeof o.config !== 'object') throw new MessageError(key, 'config must be an object');
  if (!STATUSES.includes(o.status as RunStatus)) throw new MessageError(key, `status must be one of ${STATUSES.join(', ')}`);
  return {
    v: 1, run, input: str(key, o, 'input'), output: str(key, o, 'output'),
    roi: { begin: vec3(key, roi, 'begin'), end: vec3(key, roi, 'end') },
    config: o.config as TesseraConfig, identity: str(key, o, 'identity'), epoch: int(key, o, 'epoch', 1),
    // Records written before scopes existed: their scope is as old as the run.
    scopeEpoch: o.scopeEpoch === undefined ? 1 : int(key, o, 'scopeEpoch', 1),
    status: o.status as RunStatus, coordinator: str(key, o, 'coordinator'), updatedAt: str(key, o, 'updatedAt'),
    progress: o.progress as RunRecord['progress'],
  };
}
