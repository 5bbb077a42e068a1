// The scheduler: pure, like daisy's. From the task kinds (each a lazy grid of blocks of chunks),
// the dependencies between kinds (geometric: a task needs every upstream task whose blocks lie
// within `reach` chunks of its own), and what is done or failed, it answers which tasks are
// ready. The embedded runner and the NATS coordinator drive this same class.
//
// Memory stays flat on any volume: per kind, two bits of state per task (pending, queued,
// done, dead), a queue of ready tasks (the frontier, not the grid) and the failed tasks with
// their causes. Nothing is stored per dependency: upstream and downstream tasks are computed
// from a task's index by a few integer divisions when needed. Root kinds (no upstream) are
// handed out lazily in Z-order; a completion makes downstream tasks ready (event-driven, never
// a scan of the grid).
import type { Vec3 } from './geometry/box.ts';
import { type Range3, indexId, indexOf, inRange, linearOf, rangeShape, rangeSize, relatedBlocks } from './geometry/grid.ts';
import { type MortonWalk, mortonWalk } from './geometry/morton.ts';

export interface KindSpec {
  readonly name: string;
  /** Chunks per task along each axis (stage one runs on blocks of several chunks). */
  readonly block: Vec3;
  /** The task indices (block coordinates, absolute) this run must complete. */
  readonly range: Range3;
}

/** `kind` needs every `needs` task whose chunks lie within `reach` chunks of its own chunks. */
export interface Dependency {
  readonly kind: string;
  readonly needs: string;
  readonly reach: Vec3;
}

export interface TaskRef {
  readonly kind: string;
  /** Absolute block index of the task within its kind's grid. */
  readonly index: Vec3;
}

export interface Failure {
  readonly task: string;
  readonly reason: string;
}

export interface KindCounts {
  total: number;
  done: number;
  failed: number;
  skipped: number;
}

/** Restores between two compactions of the ready queues (see restore). */
const RESTORE_COMPACT = 1 << 18;

const PENDING = 0;
const QUEUED = 1; // in the ready queue or handed out
const DONE = 2;
const DEAD = 3; // failed, or skipped because something it needs failed

interface Kind {
  spec: KindSpec;
  size: number;
  /** range.lo and range shape, unpacked: the hot paths compute linear positions without arrays. */
  lo0: number; lo1: number; lo2: number;
  n1: number; n2: number;
  state: Uint8Array;
  up: Array<{ kind: Kind; reach: Vec3 }>;
  down: Array<{ kind: Kind; reach: Vec3 }>;
  ready: number[];
  head: number;
  /** Handed out and not yet reported back (bounded by the runner's concurrency). */
  out: Set<number>;
  done: number;
  failed: Map<number, string>;
  skipped: number;
  /** Root kinds: the next Morton code to hand out. */
  walk?: MortonWalk;
  cursor: number;
}

/** One axis of Scheduler.span: blocks of size `ob` meeting block i (size b) grown by `reach`, within [lo, hi). */
function axisSpan(i: number, b: number, reach: number, ob: number, lo: number, hi: number, out: Int32Array, at: number): boolean {
  const l = Math.max(Math.floor((i * b - reach) / ob), lo);
  const h = Math.min(Math.ceil(((i + 1) * b + reach) / ob), hi);
  out[at] = l;
  out[at + 1] = h;
  return h > l;
}

export function taskId(t: TaskRef): string {
  return `${t.kind}/${indexId(t.index)}`;
}

export class Scheduler {
  private readonly kinds: Kind[];
  private readonly byName = new Map<string, Kind>();
  private started = false;
  private restored = 0;

  constructor(kinds: readonly KindSpec[], deps: readonly Dependency[]) {
    this.kinds = kinds.map((spec) => {
      const size = rangeSize(spec.range);
      const shape = rangeShape(spec.range);
      return {
        spec, size, lo0: spec.range.lo[0], lo1: spec.range.lo[1], lo2: spec.range.lo[2], n1: shape[1], n2: shape[2], state: new Uint8Array(Math.ceil(size / 4)), up: [], down: [], ready: [], head: 0, out: new Set(),
        done: 0, failed: new Map(), skipped: 0, cursor: 0,
      };
    });
    for (const k of this.kinds) {
      if (this.byName.has(k.spec.name)) throw new RangeError(`scheduler: kind ${k.spec.name} given twice`);
      this.byName.set(k.spec.name, k);
    }
    for (const d of deps) {
      const k = this.kind(d.kind);
      const u = this.kind(d.needs);
      if (this.kinds.indexOf(u) >= this.kinds.indexOf(k)) throw new RangeError(`scheduler: ${d.kind} needs ${d.needs}, which must come before it`);
      k.up.push({ kind: u, reach: d.reach });
      u.down.push({ kind: k, reach: d.reach });
    }
    for (const k of this.kinds) if (k.up.length === 0) k.walk = mortonWalk(rangeShape(k.spec.range));
    // A task with an upstream kind but no upstream task in the run would never be made ready.
    // Ranges are boxes and the relation is monotone, so a miss along any axis shows at a corner.
    for (const k of this.kinds) {
      if (k.size === 0) continue;
      for (const e of k.up) {
        for (let c = 0; c < 8; c++) {
          const index = [0, 1, 2].map((a) => ((c >> a) & 1 ? k.spec.range.hi[a] - 1 : k.spec.range.lo[a])) as unknown as Vec3;
          if (rangeSize(this.related(k, index, e.kind, e.reach)) === 0) {
            throw new RangeError(`scheduler: task ${taskId({ kind: k.spec.name, index })} needs no ${e.kind.spec.name} task of this run (ranges do not match)`);
          }
        }
      }
    }
    // (Kinds downstream of a whole-kind barrier get their walk when the barrier is done: wake().)
  }

  private kind(name: string): Kind {
    const k = this.byName.get(name);
    if (!k) throw new RangeError(`scheduler: unknown task kind ${name}`);
    return k;
  }

  private get(k: Kind, i: number): number {
    return (k.state[i >> 2] >> ((i & 3) * 2)) & 3;
  }

  private set(k: Kind, i: number, s: number): void {
    const sh = (i & 3) * 2;
    k.state[i >> 2] = (k.state[i >> 2] & ~(3 << sh)) | (s << sh);
  }

  private locate(t: TaskRef): { k: Kind; i: number } | undefined {
    const k = this.kind(t.kind);
    return inRange(k.spec.range, t.index) ? { k, i: linearOf(k.spec.range, t.index) } : undefined;
  }

  /** The tasks of `other` related to task `index` of `k` through `reach` (its upstream or downstream). */
  private related(k: Kind, index: Vec3, other: Kind, reach: Vec3): Range3 {
    return relatedBlocks(index, k.spec.block, reach, other.spec.block, other.spec.range);
  }

  /** Tasks of kind `needs` that task `t` needs (only those this run covers). */
  upstream(t: TaskRef, needs: string): Range3 {
    const k = this.kind(t.kind);
    const e = k.up.find((u) => u.kind.spec.name === needs);
    if (!e) throw new RangeError(`scheduler: ${t.kind} does not need ${needs}`);
    return this.related(k, t.index, e.kind, e.reach);
  }

  /**
   * The same as `related`, allocation-free, for the hot paths (every completion wakes up to 27
   * tasks, each checking up to 27 upstream tasks): fills `out` with [lo0, hi0, lo1, hi1, lo2,
   * hi2] in `other`'s block indices, clipped to its range; returns false when empty.
   */
  private span(k: Kind, i0: number, i1: number, i2: number, other: Kind, reach: Vec3, out: Int32Array): boolean {
    const b = k.spec.block, ob = other.spec.block, r = other.spec.range;
    return axisSpan(i0, b[0], reach[0], ob[0], r.lo[0], r.hi[0], out, 0)
      && axisSpan(i1, b[1], reach[1], ob[1], r.lo[1], r.hi[1], out, 2)
      && axisSpan(i2, b[2], reach[2], ob[2], r.lo[2], r.hi[2], out, 4);
  }

  private readonly spanA = new Int32Array(6);
  private readonly spanB = new Int32Array(6);

  /** Is every task of `other` related to task (i0, i1, i2) of `k` through `reach` done? */
  private allDone(k: Kind, i0: number, i1: number, i2: number, other: Kind, reach: Vec3): boolean {
    const r = this.spanB;
    if (!this.span(k, i0, i1, i2, other, reach, r)) return true;
    // A whole kind (the merger's one task needs every faces task) is counted, not scanned.
    if ((r[1] - r[0]) * (r[3] - r[2]) * (r[5] - r[4]) === other.size) return other.done === other.size;
    for (let z = r[0]; z < r[1]; z++) for (let y = r[2]; y < r[3]; y++) {
      const row = ((z - other.lo0) * other.n1 + (y - other.lo1)) * other.n2 - other.lo2;
      for (let x = r[4]; x < r[5]; x++) if (this.get(other, row + x) !== DONE) return false;
    }
    return true;
  }

  private allNeedsDone(k: Kind, index: Vec3): boolean {
    return this.needsDone(k, index[0], index[1], index[2]);
  }

  private needsDone(k: Kind, i0: number, i1: number, i2: number): boolean {
    for (let u = 0; u < k.up.length; u++) if (!this.allDone(k, i0, i1, i2, k.up[u].kind, k.up[u].reach)) return false;
    return true;
  }

  /** After task `index` of `k` completed: queue the downstream tasks that became ready. */
  private wake(k: Kind, index: Vec3): void {
    for (const e of k.down) {
      const d = e.kind;
      if (k.size === 1 && d.up.length === 1 && d.size > 1) {
        // Every task of `d` needs only this one (after the merger): hand them out lazily in
        // Z-order, as root tasks are, instead of queueing the whole grid at once.
        if (!d.walk) {
          d.walk = mortonWalk(rangeShape(d.spec.range));
          d.cursor = 0;
        }
        continue;
      }
      const r = this.spanA;
      if (!this.span(k, index[0], index[1], index[2], d, e.reach, r)) continue;
      const [z0, z1, y0, y1, x0, x1] = r;
      for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) {
        const row = ((z - d.lo0) * d.n1 + (y - d.lo1)) * d.n2 - d.lo2;
        for (let x = x0; x < x1; x++) {
          const j = row + x;
          if (this.get(d, j) === PENDING && this.needsDone(d, z, y, x)) {
            this.set(d, j, QUEUED);
            d.ready.push(j);
          }
        }
      }
    }
  }

  /**
   * Up to `max` ready tasks, marked as handed out. Downstream kinds first (so intermediates are
   * consumed and freed soon), then new root tasks in Z-order.
   */
  next(max: number): TaskRef[] {
    this.started = true;
    const out: TaskRef[] = [];
    for (let ki = this.kinds.length - 1; ki >= 0 && out.length < max; ki--) {
      const k = this.kinds[ki];
      while (out.length < max && k.head < k.ready.length) {
        const i = k.ready[k.head++];
        if (this.get(k, i) !== QUEUED || k.out.has(i)) continue;
        k.out.add(i);
        out.push({ kind: k.spec.name, index: indexOf(k.spec.range, i) });
      }
      if (k.head > 4096 && k.head * 2 > k.ready.length) {
        k.ready = k.ready.slice(k.head);
        k.head = 0;
      }
    }
    for (const k of this.kinds) {
      if (!k.walk) continue;
      while (out.length < max && k.cursor < k.walk.codes) {
        const o = k.walk.at(k.cursor++);
        if (!o) continue;
        const index: Vec3 = [k.spec.range.lo[0] + o[0], k.spec.range.lo[1] + o[1], k.spec.range.lo[2] + o[2]];
        const i = linearOf(k.spec.range, index);
        if (this.get(k, i) !== PENDING) continue;
        if (k.up.length > 0 && !this.allNeedsDone(k, index)) {
          // A walk behind a barrier whose task runs again (reopened on resume): wait for it.
          k.cursor--;
          break;
        }
        this.set(k, i, QUEUED);
        k.out.add(i);
        out.push({ kind: k.spec.name, index });
      }
    }
    return out;
  }

  /** A handed-out task completed. Returns false when it was already done (a duplicate). */
  done(t: TaskRef): boolean {
    const at = this.locate(t);
    if (!at) throw new RangeError(`scheduler: ${taskId(t)} is outside this run`);
    at.k.out.delete(at.i);
    const s = this.get(at.k, at.i);
    if (s === DONE) return false;
    if (s === DEAD) {
      // A task that failed earlier and then succeeded on a retry: take the success.
      at.k.failed.delete(at.i);
    }
    this.set(at.k, at.i, DONE);
    at.k.done++;
    this.wake(at.k, t.index);
    return true;
  }

  /**
   * Record a task done in an earlier run (resume). Tasks outside this run's ranges are
   * ignored (false): a smaller ROI than the one they were computed for.
   */
  restore(t: TaskRef): boolean {
    if (!this.byName.has(t.kind)) return false;
    const at = this.locate(t);
    if (!at || this.get(at.k, at.i) === DONE) return false;
    this.set(at.k, at.i, DONE);
    at.k.done++;
    this.wake(at.k, t.index);
    // Tasks queued as ready by one restore are mostly restored done by a later one: their queue
    // entries go stale (5 M restored tasks left 4.9 M of them, ~130 MiB); drop them as we go.
    if (++this.restored % RESTORE_COMPACT === 0) this.compact();
    return true;
  }

  /** Drop ready-queue entries of tasks that are no longer ready (restored done since). */
  compact(): void {
    for (const k of this.kinds) {
      const keep: number[] = [];
      for (let j = k.head; j < k.ready.length; j++) {
        const i = k.ready[j];
        if (this.get(k, i) === QUEUED && !k.out.has(i)) keep.push(i);
      }
      k.ready = keep;
      k.head = 0;
    }
  }

  /** A handed-out task will not be retried: it and everything downstream of it is dead. */
  fail(t: TaskRef, reason: string): void {
    const at = this.locate(t);
    if (!at) throw new RangeError(`scheduler: ${taskId(t)} is outside this run`);
    at.k.out.delete(at.i);
    if (this.get(at.k, at.i) === DONE || this.get(at.k, at.i) === DEAD) return;
    this.set(at.k, at.i, DEAD);
    at.k.failed.set(at.i, reason);
    const stack: Array<{ k: Kind; index: Vec3 }> = [{ k: at.k, index: t.index }];
    while (stack.length) {
      const { k, index } = stack.pop()!;
      for (const e of k.down) {
        const d = e.kind;
        const r = this.related(k, index, d, e.reach);
        for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) {
          const j = linearOf(d.spec.range, [z, y, x]);
          if (this.get(d, j) !== PENDING) continue;
          this.set(d, j, DEAD);
          d.skipped++;
          stack.push({ k: d, index: [z, y, x] });
        }
      }
    }
  }

  /** A handed-out task comes back unfinished (its worker stopped): hand it out again later. */
  release(t: TaskRef): void {
    const at = this.locate(t);
    if (!at || this.get(at.k, at.i) !== QUEUED) return;
    at.k.out.delete(at.i);
    at.k.ready.push(at.i);
  }

  /**
   * Before any task is handed out (while restoring an earlier run): a done task must run again
   * because its result is gone and an unfinished task needs it. Its downstream tasks that were
   * made ready by it wait for it again.
   */
  reopen(t: TaskRef): void {
    if (this.started) throw new Error('scheduler: reopen() is only allowed before next()');
    const at = this.locate(t);
    if (!at || this.get(at.k, at.i) !== DONE) return;
    this.set(at.k, at.i, PENDING);
    at.k.done--;
    if (at.k.up.length > 0 && this.allNeedsDone(at.k, t.index)) {
      this.set(at.k, at.i, QUEUED);
      at.k.ready.push(at.i);
    }
    for (const e of at.k.down) {
      const d = e.kind;
      if (at.k.size === 1 && d.up.length === 1 && d.walk) {
        // Its lazy walk starts again once the barrier is done again (see wake()).
        d.walk = undefined;
        d.cursor = 0;
      }
      const r = this.related(at.k, t.index, d, e.reach);
      for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) {
        const j = linearOf(d.spec.range, [z, y, x]);
        if (this.get(d, j) === QUEUED) this.set(d, j, PENDING);
      }
    }
  }

  /**
   * Every task that needs `t` is done: `t`'s intermediate result can be freed. (Failed and
   * skipped tasks do not count: the next run retries them with the results they need. A later
   * run over a larger ROI recomputes what it needs again.)
   */
  consumersDone(t: TaskRef): boolean {
    const k = this.kind(t.kind);
    return k.down.every((e) => this.allDone(k, t.index[0], t.index[1], t.index[2], e.kind, e.reach));
  }

  /** Every task of the run is done, failed or skipped. */
  get finished(): boolean {
    return this.kinds.every((k) => k.done + k.failed.size + k.skipped === k.size);
  }

  counts(): Record<string, KindCounts> {
    const out: Record<string, KindCounts> = {};
    for (const k of this.kinds) out[k.spec.name] = { total: k.size, done: k.done, failed: k.failed.size, skipped: k.skipped };
    return out;
  }

  /** Failed tasks with their causes, in task order. */
  failures(): Failure[] {
    const out: Failure[] = [];
    for (const k of this.kinds) {
      for (const i of [...k.failed.keys()].sort((a, b) => a - b)) {
        out.push({ task: taskId({ kind: k.spec.name, index: indexOf(k.spec.range, i) }), reason: k.failed.get(i)! });
      }
    }
    return out;
  }

  /** State of one task, for tests and status views. */
  state(t: TaskRef): 'pending' | 'queued' | 'done' | 'dead' | 'outside' {
    const at = this.locate(t);
    if (!at) return 'outside';
    return (['pending', 'queued', 'done', 'dead'] as const)[this.get(at.k, at.i)];
  }
}
