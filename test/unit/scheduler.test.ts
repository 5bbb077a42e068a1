import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Vec3, box, intersect, isEmpty } from '../../shared/geometry/box.ts';
import {
  type Range3, blockReach, blocksMeeting, chunkBox, chunkRange, forEachIndex, indexId, indexOf, linearOf,
  parseIndexId, range3, rangeSize, relatedBlocks,
} from '../../shared/geometry/grid.ts';
import { mortonWalk } from '../../shared/geometry/morton.ts';
import { type Dependency, type KindSpec, type TaskRef, Scheduler, taskId } from '../../shared/scheduler.ts';
import { randInt, rng } from '../helpers/rng.ts';

// ---------------------------------------------------------------- independent brute-force geometry

/** Every index of a range, by plain nested loops (raster order, z slowest). */
function indicesOf(lo: Vec3, hi: Vec3): Vec3[] {
  const out: Vec3[] = [];
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) out.push([z, y, x]);
  return out;
}

const overlaps = (lo1: number, hi1: number, lo2: number, hi2: number) => lo1 < hi2 && lo2 < hi1;

interface Spec {
  kinds: KindSpec[];
  deps: Dependency[];
}

interface Truth {
  /** id → kind and index, for every task of every kind's range. */
  tasks: Map<string, TaskRef>;
  /** id → ids of the tasks it needs (only those inside their kind's range). */
  needs: Map<string, string[]>;
  /** id → ids of the tasks that need it. */
  consumers: Map<string, string[]>;
  size: Record<string, number>;
}

/**
 * The dependency relation from its definition: task i of kind K (block Bk) needs task j of kind U
 * (block Bu, in U's range) when some chunk of j lies within `reach` chunks of some chunk of i,
 * i.e. per axis [i·Bk − r, (i+1)·Bk + r) meets [j·Bu, (j+1)·Bu).
 */
function truthOf(spec: Spec): Truth {
  const tasks = new Map<string, TaskRef>();
  const needs = new Map<string, string[]>();
  const consumers = new Map<string, string[]>();
  const size: Record<string, number> = {};
  const byKind = new Map<string, TaskRef[]>();
  for (const k of spec.kinds) {
    const list = indicesOf(k.range.lo, k.range.hi).map((index) => ({ kind: k.name, index }));
    byKind.set(k.name, list);
    size[k.name] = list.length;
    for (const t of list) {
      tasks.set(taskId(t), t);
      needs.set(taskId(t), []);
      consumers.set(taskId(t), []);
    }
  }
  for (const d of spec.deps) {
    const K = spec.kinds.find((k) => k.name === d.kind)!;
    const U = spec.kinds.find((k) => k.name === d.needs)!;
    for (const t of byKind.get(K.name)!) {
      for (const u of byKind.get(U.name)!) {
        let ok = true;
        for (let a = 0; a < 3 && ok; a++) {
          ok = overlaps(
            t.index[a] * K.block[a] - d.reach[a], (t.index[a] + 1) * K.block[a] + d.reach[a],
            u.index[a] * U.block[a], (u.index[a] + 1) * U.block[a],
          );
        }
        if (!ok) continue;
        needs.get(taskId(t))!.push(taskId(u));
        consumers.get(taskId(u))!.push(taskId(t));
      }
    }
  }
  return { tasks, needs, consumers, size };
}

/** Tasks that (transitively) need one of `roots`, the roots included. */
function closure(truth: Truth, roots: readonly string[]): Set<string> {
  const out = new Set(roots);
  const stack = [...roots];
  while (stack.length) {
    for (const c of truth.consumers.get(stack.pop()!)!) {
      if (!out.has(c)) {
        out.add(c);
        stack.push(c);
      }
    }
  }
  return out;
}

type Action = 'done' | 'fail' | 'release';

interface DriveOptions {
  /** Seeded RNG: random batch sizes and random completion order; without it, FIFO and all at once. */
  seed?: number;
  /** What to do with a handed-out task (default done); called once per hand-out. */
  decide?: (t: TaskRef, handedBefore: number) => Action;
  /** Tasks already done before driving (restored). */
  preDone?: Iterable<string>;
  /** Checked after every completion. */
  after?: (s: Scheduler, done: ReadonlySet<string>) => void;
  maxBatch?: number;
}

interface Driven {
  handed: Map<string, number>;
  done: Set<string>;
  failed: Set<string>;
  order: string[];
}

/**
 * Drive the scheduler like a runner would (next → work → done), checking on every hand-out that
 * the task is in its kind's range and that everything it needs (by brute force) is done.
 */
function drive(s: Scheduler, truth: Truth, o: DriveOptions = {}): Driven {
  const r = o.seed === undefined ? undefined : rng(o.seed);
  const done = new Set<string>(o.preDone ?? []);
  const failed = new Set<string>();
  const handed = new Map<string, number>();
  const order: string[] = [];
  const outstanding: TaskRef[] = [];
  const total = truth.tasks.size;
  for (let iter = 0; ; iter++) {
    assert.ok(iter < 20 * total + 100, 'drive does not terminate');
    const want = r ? randInt(r, 1, (o.maxBatch ?? 6) + 1) : (o.maxBatch ?? 4);
    const batch = s.next(want);
    assert.ok(batch.length <= want, `next(${want}) returned ${batch.length} tasks`);
    for (const t of batch) {
      const id = taskId(t);
      assert.ok(truth.tasks.has(id), `${id} is outside its kind's range`);
      assert.ok(!done.has(id), `${id} handed out although already done`);
      assert.ok(!outstanding.some((x) => taskId(x) === id), `${id} handed out while still out`);
      for (const n of truth.needs.get(id)!) assert.ok(done.has(n), `${id} handed out before ${n} was done`);
      handed.set(id, (handed.get(id) ?? 0) + 1);
      order.push(id);
      outstanding.push(t);
    }
    if (batch.length === 0 && outstanding.length === 0) break;
    const n = r ? randInt(r, 1, outstanding.length + 1) : outstanding.length;
    for (let k = 0; k < n; k++) {
      const t = outstanding.splice(r ? randInt(r, 0, outstanding.length) : 0, 1)[0];
      const id = taskId(t);
      const action = o.decide ? o.decide(t, handed.get(id)! - 1) : 'done';
      if (action === 'done') {
        assert.equal(s.done(t), true, `done(${id})`);
        done.add(id);
      } else if (action === 'fail') {
        s.fail(t, `boom ${id}`);
        failed.add(id);
      } else {
        s.release(t);
      }
      o.after?.(s, done);
    }
  }
  return { handed, done, failed, order };
}

// Specs used by several tests.

/** Two kinds: "a" on blocks of [1,2,2] chunks, "b" on single chunks needing "a" within one chunk. */
function twoKinds(lo: Vec3 = [0, 0, 0]): Spec {
  return {
    kinds: [
      { name: 'a', block: [1, 2, 2], range: range3(lo, [lo[0] + 3, lo[1] + 2, lo[2] + 3]) },
      // b covers the chunks of a's blocks, minus a border on some sides and plus one on others,
      // so that some b tasks see only part of the a tasks they would reach.
      { name: 'b', block: [1, 1, 1], range: range3([lo[0], 2 * lo[1] + 1, 2 * lo[2]], [lo[0] + 4, 2 * lo[1] + 4, 2 * lo[2] + 6]) },
    ],
    deps: [{ kind: 'b', needs: 'a', reach: [1, 1, 1] }],
  };
}

/** The run's shape: stage1 [1,2,2] ─reach 1→ boxes ─reach 0→ stage2 ─reach 1→ paste. */
function fourKinds(): Spec {
  return {
    kinds: [
      { name: 's1', block: [1, 2, 2], range: range3([0, 0, 0], [4, 3, 3]) },
      { name: 'boxes', block: [1, 1, 1], range: range3([0, 0, 0], [4, 5, 5]) },
      { name: 'stage2', block: [1, 1, 1], range: range3([0, 0, 0], [4, 5, 5]) },
      { name: 'paste', block: [1, 1, 1], range: range3([1, 1, 1], [3, 4, 4]) },
    ],
    deps: [
      { kind: 'boxes', needs: 's1', reach: [1, 1, 1] },
      { kind: 'stage2', needs: 'boxes', reach: [0, 0, 0] },
      { kind: 'paste', needs: 'stage2', reach: [1, 1, 1] },
    ],
  };
}

/** Three kinds with a skewed block and a reach-0 edge; non-zero range origins. */
function threeKinds(): Spec {
  return {
    kinds: [
      { name: 'a', block: [2, 1, 3], range: range3([1, 0, 0], [4, 4, 3]) },
      { name: 'b', block: [1, 1, 1], range: range3([2, 1, 1], [8, 4, 8]) },
      { name: 'c', block: [1, 1, 1], range: range3([3, 1, 2], [7, 4, 7]) },
    ],
    deps: [
      { kind: 'b', needs: 'a', reach: [1, 0, 1] },
      { kind: 'c', needs: 'b', reach: [0, 0, 0] },
    ],
  };
}

function sched(spec: Spec): Scheduler {
  return new Scheduler(spec.kinds, spec.deps);
}

function assertCompleted(s: Scheduler, truth: Truth, d: Driven): void {
  assert.equal(d.handed.size, truth.tasks.size, 'every task handed out');
  for (const [id, n] of d.handed) assert.equal(n, 1, `${id} handed out ${n} times`);
  assert.equal(s.finished, true);
  const counts = s.counts();
  for (const [k, n] of Object.entries(truth.size)) assert.deepEqual(counts[k], { total: n, done: n, failed: 0, skipped: 0 }, k);
  assert.deepEqual(s.failures(), []);
}

// ---------------------------------------------------------------- morton.ts

test('mortonWalk visits every offset of odd and skewed shapes exactly once, in a code space ≤ 8 × size', () => {
  const shapes: Vec3[] = [[3, 5, 7], [1, 1, 1000], [1, 1, 1], [1000, 1, 1], [2, 2, 2], [17, 1, 9], [1, 33, 2], [8, 8, 8], [5, 4, 1]];
  for (const shape of shapes) {
    const w = mortonWalk(shape);
    const size = shape[0] * shape[1] * shape[2];
    assert.ok(w.codes >= size, `${shape}: ${w.codes} codes < ${size}`);
    assert.ok(w.codes <= 8 * size, `${shape}: ${w.codes} codes > 8 × ${size}`);
    const seen = new Uint8Array(size);
    let visited = 0;
    for (let code = 0; code < w.codes; code++) {
      const o = w.at(code);
      if (!o) continue;
      for (let a = 0; a < 3; a++) assert.ok(Number.isInteger(o[a]) && o[a] >= 0 && o[a] < shape[a], `${shape}: code ${code} → ${o}`);
      const i = (o[0] * shape[1] + o[1]) * shape[2] + o[2];
      assert.equal(seen[i], 0, `${shape}: ${o} visited twice`);
      seen[i] = 1;
      visited++;
    }
    assert.equal(visited, size, `${shape}: visited ${visited} of ${size}`);
  }
});

test('mortonWalk finishes small cubes: on 8×8×8 every 8 consecutive codes form an aligned 2×2×2 cube', () => {
  const w = mortonWalk([8, 8, 8]);
  assert.equal(w.codes, 512);
  for (const n of [8, 64]) {
    const side = Math.cbrt(n);
    for (let start = 0; start < 512; start += n) {
      const pts: Vec3[] = [];
      for (let c = start; c < start + n; c++) pts.push(w.at(c)!);
      const lo = [0, 1, 2].map((a) => Math.min(...pts.map((p) => p[a])));
      const hi = [0, 1, 2].map((a) => Math.max(...pts.map((p) => p[a])));
      for (let a = 0; a < 3; a++) {
        assert.equal(hi[a] - lo[a] + 1, side, `codes ${start}..${start + n}: not a ${side}-cube`);
        assert.equal(lo[a] % side, 0, 'cube not aligned');
      }
    }
  }
});

// ---------------------------------------------------------------- grid.ts (lazy grid)

test('range3 clamps an inverted range to empty; rangeSize is the product of the extents', () => {
  assert.equal(rangeSize(range3([0, 0, 0], [3, 5, 7])), 105);
  assert.equal(rangeSize(range3([-2, 1, 4], [1, 3, 5])), 6);
  const e = range3([2, 2, 2], [1, 5, 5]);
  assert.equal(rangeSize(e), 0);
  assert.deepEqual(e.hi, [2, 5, 5]);
  let n = 0;
  forEachIndex(e, () => n++);
  assert.equal(n, 0);
});

test('linearOf/indexOf are inverse and follow raster order (z slowest) on a range with non-zero lo', () => {
  for (const r of [range3([-2, 3, 5], [1, 7, 9]), range3([4, -3, 7], [5, 2, 8]), range3([1, 1, 1], [2, 2, 2])]) {
    let n = 0;
    for (const i of indicesOf(r.lo, r.hi)) {
      assert.equal(linearOf(r, i), n, `linearOf(${i})`);
      assert.deepEqual(indexOf(r, n), i, `indexOf(${n})`);
      n++;
    }
    assert.equal(n, rangeSize(r));
  }
});

test('forEachIndex visits each index of the range once, in raster order', () => {
  const r = range3([-1, 2, 0], [2, 4, 3]);
  const seen: Vec3[] = [];
  forEachIndex(r, (i) => seen.push([i[0], i[1], i[2]]));
  assert.deepEqual(seen, indicesOf(r.lo, r.hi));
});

test('chunkRange: exactly the chunks whose cell meets the region (brute force, negative coordinates too)', () => {
  const r = rng(3);
  for (let t = 0; t < 300; t++) {
    const chunk = [randInt(r, 1, 6), randInt(r, 1, 6), randInt(r, 1, 6)] as unknown as Vec3;
    const begin = [0, 1, 2].map(() => randInt(r, -12, 12));
    const region = box(begin as unknown as Vec3, begin.map((v) => v + randInt(r, 1, 15)) as unknown as Vec3);
    const got = chunkRange(region, chunk);
    // A chunk meets the region iff its cell overlaps the region along every axis: check each axis.
    for (let a = 0; a < 3; a++) {
      const want: number[] = [];
      for (let i = -40; i < 40; i++) if (overlaps(i * chunk[a], (i + 1) * chunk[a], region.begin[a], region.end[a])) want.push(i);
      const have: number[] = [];
      for (let i = got.lo[a]; i < got.hi[a]; i++) have.push(i);
      assert.deepEqual(have, want, `region ${JSON.stringify(region)} chunk ${chunk} axis ${a}`);
    }
  }
  // And once in 3D, cell by cell.
  {
    const chunk: Vec3 = [3, 2, 5];
    const region = box([-4, 1, 7], [5, 6, 11]);
    const got = chunkRange(region, chunk);
    const want: Vec3[] = [];
    for (const i of indicesOf([-5, -5, -5], [5, 5, 5])) {
      const cell = box([i[0] * chunk[0], i[1] * chunk[1], i[2] * chunk[2]], [(i[0] + 1) * chunk[0], (i[1] + 1) * chunk[1], (i[2] + 1) * chunk[2]]);
      if (!isEmpty(intersect(cell, region))) want.push(i);
    }
    assert.deepEqual(indicesOf(got.lo, got.hi), want, `region ${JSON.stringify(region)} chunk ${chunk}`);
  }
  assert.throws(() => chunkRange(box([0, 0, 0], [4, 4, 4]), [2, 0, 2]), RangeError);
});

test('chunkBox: the grid cell of the chunk, clipped to the volume at the far edge', () => {
  const vol = box([0, 0, 0], [10, 21, 30]);
  assert.deepEqual(chunkBox([0, 0, 0], [4, 8, 16], vol), box([0, 0, 0], [4, 8, 16]));
  assert.deepEqual(chunkBox([1, 1, 1], [4, 8, 16], vol), box([4, 8, 16], [8, 16, 30]));
  assert.deepEqual(chunkBox([2, 2, 0], [4, 8, 16], vol), box([8, 16, 0], [10, 21, 16]));
  assert.ok(isEmpty(chunkBox([3, 0, 0], [4, 8, 16], vol)));
  // Chunk boxes of the chunk range tile the volume: volumes add up.
  let sum = 0;
  forEachIndex(chunkRange(vol, [4, 8, 16]), (i) => {
    const b = chunkBox(i, [4, 8, 16], vol);
    sum += (b.end[0] - b.begin[0]) * (b.end[1] - b.begin[1]) * (b.end[2] - b.begin[2]);
  });
  assert.equal(sum, 10 * 21 * 30);
});

test('blocksMeeting / blockReach / relatedBlocks agree with brute force on random inputs', () => {
  const r = rng(5);
  for (let t = 0; t < 400; t++) {
    const block = [randInt(r, 1, 4), randInt(r, 1, 4), randInt(r, 1, 4)] as unknown as Vec3;
    const other = [randInt(r, 1, 4), randInt(r, 1, 4), randInt(r, 1, 4)] as unknown as Vec3;
    const reach = [randInt(r, 0, 3), randInt(r, 0, 3), randInt(r, 0, 3)] as unknown as Vec3;
    const index = [randInt(r, -2, 4), randInt(r, -2, 4), randInt(r, -2, 4)] as unknown as Vec3;
    const olo = [randInt(r, -3, 2), randInt(r, -3, 2), randInt(r, -3, 2)] as unknown as Vec3;
    const otherRange = range3(olo, [olo[0] + randInt(r, 0, 6), olo[1] + randInt(r, 0, 6), olo[2] + randInt(r, 0, 6)]);

    // blockReach: chunk range of the block grown by reach.
    const br = blockReach(index, block, reach);
    for (let a = 0; a < 3; a++) {
      assert.equal(br.lo[a], index[a] * block[a] - reach[a]);
      assert.equal(br.hi[a] - br.lo[a], block[a] + 2 * reach[a]);
    }
    // blocksMeeting: blocks of `other` holding a chunk of br.
    const bm = blocksMeeting(br, other);
    for (let a = 0; a < 3; a++) {
      const want: number[] = [];
      for (let j = -20; j < 20; j++) if (overlaps(br.lo[a], br.hi[a], j * other[a], (j + 1) * other[a])) want.push(j);
      const have: number[] = [];
      for (let j = bm.lo[a]; j < bm.hi[a]; j++) have.push(j);
      assert.deepEqual(have, want, `blocksMeeting axis ${a}`);
    }
    // relatedBlocks: those, limited to otherRange.
    const rel = relatedBlocks(index, block, reach, other, otherRange);
    const wantRel = indicesOf(otherRange.lo, otherRange.hi).filter((j) =>
      [0, 1, 2].every((a) => overlaps(index[a] * block[a] - reach[a], (index[a] + 1) * block[a] + reach[a], j[a] * other[a], (j[a] + 1) * other[a])));
    assert.deepEqual(indicesOf(rel.lo, rel.hi), wantRel);
  }
});

test('indexId / parseIndexId round-trip (negative too) and reject malformed text; taskId names kind and index', () => {
  for (const i of [[0, 0, 0], [3, 0, 12], [-1, 7, -20], [123456, 2, 99]] as Vec3[]) {
    assert.deepEqual(parseIndexId(indexId(i)), i);
  }
  assert.equal(indexId([3, 0, 12]), '3_0_12');
  for (const bad of ['', '1_2', '1_2_3_4', 'a_b_c', '1.5_2_3', ' 1_2_3', '1_2_3 ', '1__3', '1-2-3']) {
    assert.equal(parseIndexId(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(taskId({ kind: 'boxes', index: [1, -2, 3] }), 'boxes/1_-2_3');
  assert.notEqual(taskId({ kind: 'a', index: [1, 2, 3] }), taskId({ kind: 'b', index: [1, 2, 3] }));
});

// ---------------------------------------------------------------- Scheduler: construction

test('Scheduler rejects duplicate kinds, unknown kinds and a dependency on a later kind', () => {
  const a: KindSpec = { name: 'a', block: [1, 1, 1], range: range3([0, 0, 0], [2, 2, 2]) };
  const b: KindSpec = { name: 'b', block: [1, 1, 1], range: range3([0, 0, 0], [2, 2, 2]) };
  assert.throws(() => new Scheduler([a, a], []), RangeError);
  assert.throws(() => new Scheduler([a, b], [{ kind: 'b', needs: 'zzz', reach: [1, 1, 1] }]), RangeError);
  assert.throws(() => new Scheduler([a, b], [{ kind: 'a', needs: 'b', reach: [1, 1, 1] }]), RangeError);
  assert.throws(() => new Scheduler([a], [{ kind: 'a', needs: 'a', reach: [0, 0, 0] }]), RangeError);
  const s = new Scheduler([a, b], [{ kind: 'b', needs: 'a', reach: [0, 0, 0] }]);
  assert.equal(s.state({ kind: 'a', index: [5, 0, 0] }), 'outside');
  assert.equal(s.state({ kind: 'a', index: [1, 1, 1] }), 'pending');
  assert.throws(() => s.state({ kind: 'nope', index: [0, 0, 0] }), RangeError);
});

test('an empty range is finished at once and hands out nothing', () => {
  const s = new Scheduler([{ name: 'a', block: [1, 1, 1], range: range3([0, 0, 0], [0, 4, 4]) }], []);
  assert.equal(s.finished, true);
  assert.deepEqual(s.next(10), []);
  assert.deepEqual(s.counts(), { a: { total: 0, done: 0, failed: 0, skipped: 0 } });
});

// ---------------------------------------------------------------- Scheduler: driving to completion

test('two-kind chain ([1,2,2] blocks → single chunks, reach 1): each task once, never before its needs, finished', () => {
  for (const lo of [[0, 0, 0], [2, 1, 3]] as Vec3[]) {
    const spec = twoKinds(lo);
    const truth = truthOf(spec);
    // Sanity of the brute force: some b tasks need a full 3×2×2 neighbourhood of blocks, and some
    // b tasks near the range edge need fewer.
    const n = [...truth.needs.entries()].filter(([id]) => id.startsWith('b/')).map(([, v]) => v.length);
    assert.ok(Math.max(...n) > Math.min(...n));
    for (const batch of [1, 3, 100]) {
      const s = sched(spec);
      const d = drive(s, truth, { maxBatch: batch });
      assertCompleted(s, truth, d);
    }
  }
});

test('the run-shaped chain (stage1 → boxes → stage2 (reach 0) → paste) and a 3-kind chain with a reach-0 edge complete correctly', () => {
  for (const spec of [fourKinds(), threeKinds()]) {
    const truth = truthOf(spec);
    for (const batch of [1, 5, 1000]) {
      const s = sched(spec);
      const d = drive(s, truth, { maxBatch: batch });
      assertCompleted(s, truth, d);
    }
  }
});

test('random completion order with interleaved next() calls keeps every invariant (seeded)', () => {
  for (const spec of [twoKinds([1, 0, 2]), fourKinds(), threeKinds()]) {
    const truth = truthOf(spec);
    for (let seed = 1; seed <= 12; seed++) {
      const s = sched(spec);
      const d = drive(s, truth, { seed, maxBatch: 1 + (seed % 7) });
      assertCompleted(s, truth, d);
    }
  }
});

test('a task graph where some task needs nothing of a kind it depends on is refused at construction', () => {
  // b's range reaches past the chunks a's range covers: b tasks at z ≥ 2 would have no upstream
  // task in this run, so no completion would ever make them ready (a hang). The scheduler checks
  // the corners of every kind's range (a miss on any axis shows at a corner) and refuses.
  const spec: Spec = {
    kinds: [
      { name: 'a', block: [1, 1, 1], range: range3([0, 0, 0], [2, 2, 2]) },
      { name: 'b', block: [1, 1, 1], range: range3([0, 0, 0], [4, 2, 2]) },
    ],
    deps: [{ kind: 'b', needs: 'a', reach: [0, 0, 0] }],
  };
  const truth = truthOf(spec);
  assert.deepEqual(truth.needs.get(taskId({ kind: 'b', index: [3, 0, 0] })), []);
  assert.throws(() => sched(spec), /b\/3_0_0 needs no a task/);
  // The same graph with a's range covering b's is accepted and completes.
  const ok: Spec = { ...spec, kinds: [spec.kinds[0], { ...spec.kinds[1], range: range3([0, 0, 0], [2, 2, 2]) }] };
  const s = sched(ok);
  assertCompleted(s, truthOf(ok), drive(s, truthOf(ok)));
});

test('upstream() names exactly the brute-force needs of a task', () => {
  const spec = fourKinds();
  const truth = truthOf(spec);
  const s = sched(spec);
  for (const [id, t] of truth.tasks) {
    const dep = spec.deps.find((d) => d.kind === t.kind);
    if (!dep) {
      assert.throws(() => s.upstream(t, 's1'), RangeError);
      continue;
    }
    const r = s.upstream(t, dep.needs);
    const got = indicesOf(r.lo, r.hi).map((index) => taskId({ kind: dep.needs, index })).sort();
    assert.deepEqual(got, [...truth.needs.get(id)!].sort(), id);
  }
});

test('downstream tasks are handed out before new root tasks', () => {
  const spec = twoKinds();
  const s = sched(spec);
  const truth = truthOf(spec);
  // Complete every root task handed out until some b task is ready.
  const done = new Set<string>();
  let ready: string | undefined;
  while (!ready) {
    const [t] = s.next(1);
    assert.ok(t, 'ran out of tasks');
    assert.equal(t.kind, 'a');
    s.done(t);
    done.add(taskId(t));
    ready = [...truth.needs.entries()].find(([id, n]) => id.startsWith('b/') && n.every((x) => done.has(x)))?.[0];
  }
  const [t] = s.next(1);
  assert.equal(t.kind, 'b', 'a ready b task comes before a new a task');
  assert.ok(truth.needs.get(taskId(t))!.every((x) => done.has(x)));
});

test('root tasks are handed out in Z-order: the first 8 of a 4×4×4 range form its first 2×2×2 cube', () => {
  const s = new Scheduler([{ name: 'a', block: [1, 1, 1], range: range3([5, -3, 10], [9, 1, 14]) }], []);
  const first = s.next(8);
  assert.equal(first.length, 8);
  const ids = first.map((t) => indexId(t.index)).sort();
  const want = indicesOf([5, -3, 10], [7, -1, 12]).map(indexId).sort();
  assert.deepEqual(ids, want);
});

// ---------------------------------------------------------------- Scheduler: failure, release, duplicates

test('fail(): the transitive downstream is skipped and never handed out; the rest completes; failures() names it', () => {
  const spec = fourKinds();
  const truth = truthOf(spec);
  for (const [seed, victimKind] of [[1, 's1'], [2, 's1'], [3, 'boxes'], [4, 'stage2'], [5, 'paste']] as const) {
    const s = sched(spec);
    let victim: string | undefined;
    const d = drive(s, truth, {
      seed,
      decide: (t) => {
        if (victim === undefined && t.kind === victimKind) {
          victim = taskId(t);
          return 'fail';
        }
        return 'done';
      },
    });
    assert.ok(victim, 'a task of the victim kind was handed out');
    const dead = closure(truth, [victim]);
    // No task of the dead closure other than the victim was handed out.
    for (const id of dead) if (id !== victim) assert.ok(!d.handed.has(id), `${id} handed out although it needs failed ${victim}`);
    // Every other task was handed out once and done.
    for (const id of truth.tasks.keys()) {
      if (dead.has(id)) continue;
      assert.equal(d.handed.get(id), 1, `${id} handed out ${d.handed.get(id) ?? 0} times`);
      assert.ok(d.done.has(id));
    }
    assert.equal(s.finished, true);
    const counts = s.counts();
    for (const k of spec.kinds) {
      const deadOfKind = [...dead].filter((id) => id.startsWith(`${k.name}/`)).length;
      const failedOfKind = k.name === victimKind ? 1 : 0;
      assert.deepEqual(counts[k.name], {
        total: truth.size[k.name], done: truth.size[k.name] - deadOfKind, failed: failedOfKind, skipped: deadOfKind - failedOfKind,
      }, `${victimKind} failed, counts of ${k.name}`);
    }
    assert.deepEqual(s.failures(), [{ task: victim, reason: `boom ${victim}` }]);
    assert.equal(s.state(truth.tasks.get(victim)!), 'dead');
    if (victimKind !== 'paste') assert.ok(dead.size > 1, 'the failure has downstream tasks');
  }
});

test('fail() of two tasks: failures() lists both in task order, overlapping downstream counted once', () => {
  const spec = twoKinds();
  const truth = truthOf(spec);
  const s = sched(spec);
  const batch = s.next(2);
  assert.equal(batch.length, 2);
  for (const t of batch) s.fail(t, `bad ${indexId(t.index)}`);
  const d = drive(s, truth, { preDone: [] });
  const dead = closure(truth, batch.map(taskId));
  for (const id of truth.tasks.keys()) {
    if (batch.some((t) => taskId(t) === id)) continue;
    assert.equal(d.handed.has(id), !dead.has(id), id);
  }
  assert.equal(s.finished, true);
  assert.equal(s.counts().b.skipped, [...dead].filter((x) => x.startsWith('b/')).length);
  const want = [...batch].sort((x, y) => linearOf(spec.kinds[0].range, x.index) - linearOf(spec.kinds[0].range, y.index))
    .map((t) => ({ task: taskId(t), reason: `bad ${indexId(t.index)}` }));
  assert.deepEqual(s.failures(), want);
});

test('release(): a released task is handed out again, exactly once (root and downstream tasks)', () => {
  const spec = fourKinds();
  const truth = truthOf(spec);
  for (const [seed, kind] of [[7, 's1'], [8, 'boxes'], [9, 'paste']] as const) {
    const s = sched(spec);
    let released: string | undefined;
    const d = drive(s, truth, {
      seed,
      decide: (t, before) => {
        if (released === undefined && t.kind === kind && before === 0) {
          released = taskId(t);
          return 'release';
        }
        return 'done';
      },
    });
    assert.ok(released);
    for (const id of truth.tasks.keys()) assert.equal(d.handed.get(id), id === released ? 2 : 1, id);
    assert.ok(s.finished);
    assert.deepEqual(s.counts()[kind], { total: truth.size[kind], done: truth.size[kind], failed: 0, skipped: 0 });
  }
});

test('done() twice returns false the second time and counts it once', () => {
  const spec = twoKinds();
  const s = sched(spec);
  const [t] = s.next(1);
  assert.equal(s.done(t), true);
  assert.equal(s.done(t), false);
  assert.equal(s.counts().a.done, 1);
  assert.throws(() => s.done({ kind: 'a', index: [100, 0, 0] }), RangeError);
  assert.throws(() => s.fail({ kind: 'a', index: [100, 0, 0] }, 'x'), RangeError);
});

// ---------------------------------------------------------------- Scheduler: resume

test('restore() before next(): restored tasks are never handed out and their downstream become ready', () => {
  const spec = fourKinds();
  const truth = truthOf(spec);
  const r = rng(21);
  for (let trial = 0; trial < 6; trial++) {
    const s = sched(spec);
    // Restore a random subset of s1 and boxes tasks (whatever their upstream; a resume may do that).
    const restored: string[] = [];
    for (const [id, t] of truth.tasks) {
      if ((t.kind === 's1' && r() < 0.6) || (t.kind === 'boxes' && r() < 0.3)) {
        assert.equal(s.restore(t), true, id);
        restored.push(id);
      }
    }
    for (const id of restored) assert.equal(s.restore(truth.tasks.get(id)!), false, `second restore of ${id}`);
    assert.equal(s.restore({ kind: 's1', index: [99, 0, 0] }), false, 'outside the range');
    assert.equal(s.restore({ kind: 'paste', index: [0, 0, 0] }), false, 'paste range starts at [1,1,1]');
    assert.equal(s.restore({ kind: 'unknown', index: [0, 0, 0] }), false, 'unknown kind');
    const doneSet = new Set(restored);
    // Downstream of restored tasks whose needs are all restored are ready before any next().
    for (const [id, t] of truth.tasks) {
      if (doneSet.has(id)) {
        assert.equal(s.state(t), 'done');
        continue;
      }
      const needs = truth.needs.get(id)!;
      const ready = needs.length > 0 && needs.every((x) => doneSet.has(x));
      assert.equal(s.state(t), ready ? 'queued' : 'pending', id);
    }
    const d = drive(s, truth, { seed: 100 + trial, preDone: restored });
    for (const id of restored) assert.ok(!d.handed.has(id), `restored ${id} handed out`);
    for (const id of truth.tasks.keys()) if (!doneSet.has(id)) assert.equal(d.handed.get(id), 1, id);
    assert.equal(s.finished, true);
    for (const [k, n] of Object.entries(truth.size)) assert.equal(s.counts()[k].done, n);
  }
});

test('reopen(): a restored task runs again, once, and holds back its downstream until it is done again', () => {
  const spec = twoKinds();
  const truth = truthOf(spec);
  const s = sched(spec);
  const aTasks = [...truth.tasks.values()].filter((t) => t.kind === 'a');
  for (const t of aTasks) assert.equal(s.restore(t), true);
  // Every b task is ready now.
  for (const t of truth.tasks.values()) if (t.kind === 'b') assert.equal(s.state(t), 'queued');
  const victim = aTasks[4];
  const vid = taskId(victim);
  s.reopen(victim);
  assert.equal(s.state(victim), 'pending');
  assert.equal(s.counts().a.done, aTasks.length - 1);
  const held = new Set(truth.consumers.get(vid)!);
  assert.ok(held.size > 0);
  for (const t of truth.tasks.values()) if (t.kind === 'b') assert.equal(s.state(t), held.has(taskId(t)) ? 'pending' : 'queued', taskId(t));
  // Reopening a task that is not done does nothing.
  s.reopen(victim);
  s.reopen({ kind: 'a', index: [50, 50, 50] });
  assert.equal(s.counts().a.done, aTasks.length - 1);

  const pre = aTasks.filter((t) => t !== victim).map(taskId);
  const d = drive(s, truth, { seed: 31, preDone: pre });
  assert.equal(d.handed.get(vid), 1, 'the reopened task runs again once');
  for (const id of pre) assert.ok(!d.handed.has(id));
  for (const t of truth.tasks.values()) if (t.kind === 'b') assert.equal(d.handed.get(taskId(t)), 1);
  // The drive checked that no held b task came before the victim was done again; check the order too.
  const at = d.order.indexOf(vid);
  for (const id of held) assert.ok(d.order.indexOf(id) > at, `${id} ran before ${vid}`);
  assert.equal(s.finished, true);
  assert.deepEqual(s.counts().a, { total: aTasks.length, done: aTasks.length, failed: 0, skipped: 0 });
  assert.throws(() => s.reopen(victim), /before next/);
});

test('reopen() of a restored downstream task whose needs are done queues it again; reopen after next() throws', () => {
  const spec = threeKinds();
  const truth = truthOf(spec);
  const s = sched(spec);
  for (const t of truth.tasks.values()) if (t.kind !== 'c') s.restore(t);
  const b = [...truth.tasks.values()].find((t) => t.kind === 'b' && truth.consumers.get(taskId(t))!.length > 0)!;
  s.reopen(b);
  assert.equal(s.state(b), 'queued');
  for (const c of truth.consumers.get(taskId(b))!) assert.equal(s.state(truth.tasks.get(c)!), 'pending');
  const pre = [...truth.tasks.values()].filter((t) => t.kind !== 'c' && t !== b).map(taskId);
  const d = drive(s, truth, { seed: 41, preDone: pre });
  assert.equal(d.handed.get(taskId(b)), 1);
  assert.equal(d.handed.size, 1 + truth.size.c);
  assert.equal(s.finished, true);
  assert.throws(() => s.reopen(b), Error);

  const fresh = sched(spec);
  fresh.next(1);
  assert.throws(() => fresh.reopen(truth.tasks.values().next().value!), /before next/);
});

test('restore() then reopen() of several tasks along a chain, in any order, reruns exactly those', () => {
  const spec = fourKinds();
  const truth = truthOf(spec);
  const r = rng(77);
  for (let trial = 0; trial < 5; trial++) {
    const s = sched(spec);
    const restored = [...truth.tasks.entries()].filter(([, t]) => t.kind !== 'paste');
    for (const [, t] of restored) s.restore(t);
    const reopened = restored.filter(() => r() < 0.15);
    // Reopen in random order (downstream before upstream sometimes).
    for (let i = reopened.length - 1; i > 0; i--) {
      const j = randInt(r, 0, i + 1);
      [reopened[i], reopened[j]] = [reopened[j], reopened[i]];
    }
    for (const [, t] of reopened) s.reopen(t);
    const again = new Set(reopened.map(([id]) => id));
    const pre = restored.map(([id]) => id).filter((id) => !again.has(id));
    const d = drive(s, truth, { seed: 200 + trial, preDone: pre });
    for (const id of truth.tasks.keys()) {
      const want = again.has(id) || id.startsWith('paste/') ? 1 : 0;
      assert.equal(d.handed.get(id) ?? 0, want, id);
    }
    assert.equal(s.finished, true);
  }
});

// ---------------------------------------------------------------- Scheduler: a whole-kind barrier

/**
 * The instance-labelling tail of the run: per-chunk `faces` (reach 1 of `p`), one `resolve` task
 * whose block spans the whole grid (it needs every faces task), then per-chunk `relabel`.
 */
function barrier(): Spec {
  const W: Vec3 = [2 ** 40, 2 ** 40, 2 ** 40];
  const chunks = range3([1, 0, 2], [4, 3, 5]);
  return {
    kinds: [
      { name: 'p', block: [1, 1, 1], range: chunks },
      { name: 'faces', block: [1, 1, 1], range: chunks },
      { name: 'resolve', block: W, range: blocksMeeting(chunks, W) },
      { name: 'relabel', block: [1, 1, 1], range: chunks },
    ],
    deps: [
      { kind: 'faces', needs: 'p', reach: [1, 1, 1] },
      { kind: 'resolve', needs: 'faces', reach: [0, 0, 0] },
      { kind: 'relabel', needs: 'resolve', reach: [0, 0, 0] },
    ],
  };
}

test('a whole-kind barrier: resolve waits for every faces task, relabel for resolve (random order)', () => {
  const spec = barrier();
  const truth = truthOf(spec);
  assert.equal(truth.size.resolve, 1);
  const resolve = [...truth.tasks.keys()].find((id) => id.startsWith('resolve/'))!;
  assert.equal(truth.needs.get(resolve)!.length, truth.size.faces);
  for (let seed = 1; seed <= 6; seed++) {
    const s = sched(spec);
    const d = drive(s, truth, { seed });
    assertCompleted(s, truth, d);
  }
});

test('a whole-kind barrier: a failed faces task skips resolve and every relabel task', () => {
  const spec = barrier();
  const truth = truthOf(spec);
  const s = sched(spec);
  let victim: string | undefined;
  const d = drive(s, truth, {
    seed: 3,
    decide: (t) => {
      if (!victim && t.kind === 'faces') {
        victim = taskId(t);
        return 'fail';
      }
      return 'done';
    },
  });
  assert.ok(victim);
  for (const id of truth.tasks.keys()) if (id.startsWith('resolve/') || id.startsWith('relabel/')) assert.ok(!d.handed.has(id), id);
  assert.equal(s.finished, true);
  assert.equal(s.counts().relabel.skipped, truth.size.relabel);
  assert.equal(s.counts().resolve.skipped, 1);
});

test('a whole-kind barrier on resume: reopen() of the restored resolve task holds every relabel task back until it is done again', () => {
  const spec = barrier();
  const truth = truthOf(spec);
  const s = sched(spec);
  const resolve = [...truth.tasks.values()].find((t) => t.kind === 'resolve')!;
  for (const t of truth.tasks.values()) if (t.kind !== 'relabel') assert.equal(s.restore(t), true);
  assert.equal(s.consumersDone(resolve), false);
  s.reopen(resolve);
  assert.equal(s.state(resolve), 'queued', 'its needs are all done');
  const pre = [...truth.tasks.values()].filter((t) => t.kind !== 'relabel' && t !== resolve).map(taskId);
  const d = drive(s, truth, { seed: 5, preDone: pre, maxBatch: 50 });
  assert.equal(d.handed.get(taskId(resolve)), 1);
  for (const t of truth.tasks.values()) if (t.kind === 'relabel') assert.equal(d.handed.get(taskId(t)), 1);
  assert.equal(s.finished, true);
});

test('a whole-kind barrier: consumersDone of the resolve task follows the relabel tasks', () => {
  const spec = barrier();
  const truth = truthOf(spec);
  const s = sched(spec);
  drive(s, truth, {
    seed: 9,
    after: (sc, done) => {
      for (const [id, t] of truth.tasks) {
        assert.equal(sc.consumersDone(t), truth.consumers.get(id)!.every((c) => done.has(c)), `consumersDone(${id})`);
      }
    },
  });
});

// ---------------------------------------------------------------- Scheduler: consumersDone

test('consumersDone(): false until every downstream task within reach is done, then true', () => {
  for (const spec of [twoKinds([1, 1, 0]), fourKinds()]) {
    const truth = truthOf(spec);
    const s = sched(spec);
    let checks = 0;
    let flips = 0;
    const seenTrue = new Set<string>();
    drive(s, truth, {
      seed: 13,
      after: (sc, done) => {
        for (const [id, t] of truth.tasks) {
          const want = truth.consumers.get(id)!.every((c) => done.has(c));
          const got = sc.consumersDone(t);
          assert.equal(got, want, `consumersDone(${id})`);
          if (got && truth.consumers.get(id)!.length > 0 && !seenTrue.has(id)) {
            seenTrue.add(id);
            flips++;
          }
          checks++;
        }
      },
    });
    assert.ok(checks > 0);
    assert.ok(flips > 0, 'some task went from false to true');
  }
  // A kind nobody needs: its tasks' consumers are trivially done.
  const s = sched(twoKinds());
  assert.equal(s.consumersDone({ kind: 'b', index: [0, 1, 0] }), true);
});

test('consumersDone() stays false for the inputs of a failed or skipped consumer (a later run retries it)', () => {
  const spec = fourKinds();
  const truth = truthOf(spec);
  const s = sched(spec);
  let victim: TaskRef | undefined;
  const d = drive(s, truth, {
    seed: 17,
    decide: (t) => {
      if (!victim && t.kind === 'boxes') {
        victim = t;
        return 'fail';
      }
      return 'done';
    },
  });
  assert.ok(victim);
  assert.equal(s.finished, true);
  // At the end, a task's result may be freed exactly when every consumer is done.
  let held = 0;
  for (const [id, t] of truth.tasks) {
    const want = truth.consumers.get(id)!.every((c) => d.done.has(c));
    if (!want) held++;
    assert.equal(s.consumersDone(t), want, `consumersDone(${id})`);
  }
  // The failed task's inputs are among those kept.
  for (const id of truth.needs.get(taskId(victim))!) assert.equal(s.consumersDone(truth.tasks.get(id)!), false, id);
  assert.ok(held > 0);
});

// ---------------------------------------------------------------- Scheduler: scale

test('scale smoke: 200×300×400 = 24 M root tasks, 100,000 handed out and completed', () => {
  const range = range3([0, 0, 0], [200, 300, 400]);
  const s = new Scheduler([{ name: 'a', block: [1, 1, 1], range }], []);
  assert.deepEqual(s.counts().a, { total: 24_000_000, done: 0, failed: 0, skipped: 0 });
  const seen = new Set<number>();
  for (let round = 0; round < 100; round++) {
    const batch = s.next(1000);
    assert.equal(batch.length, 1000);
    for (const t of batch) {
      const i = linearOf(range, t.index);
      assert.ok(i >= 0 && i < 24_000_000);
      assert.ok(!seen.has(i), 'handed out twice');
      seen.add(i);
      assert.equal(s.done(t), true);
    }
  }
  assert.deepEqual(s.counts().a, { total: 24_000_000, done: 100_000, failed: 0, skipped: 0 });
  assert.equal(s.finished, false);
});

test('scale smoke with a dependency: 64×64×64 roots, downstream ready as roots complete', () => {
  const kinds: KindSpec[] = [
    { name: 'a', block: [2, 2, 2], range: range3([0, 0, 0], [64, 64, 64]) },
    { name: 'b', block: [1, 1, 1], range: range3([0, 0, 0], [128, 128, 128]) },
  ];
  const s = new Scheduler(kinds, [{ kind: 'b', needs: 'a', reach: [1, 1, 1] }]);
  let handed = 0;
  for (let round = 0; round < 200; round++) {
    const batch = s.next(500);
    for (const t of batch) s.done(t);
    handed += batch.length;
  }
  const c = s.counts();
  assert.equal(c.a.done + c.b.done, handed);
  assert.ok(c.b.done > 0, 'downstream tasks became ready');
  assert.equal(c.b.total, 128 ** 3);
});

test('compact() after restores drops stale ready entries and changes nothing the scheduler hands out', () => {
  const spec = fourKinds();
  const a = sched(spec);
  const prefix: TaskRef[] = [];
  for (let ts = a.next(7); ts.length && prefix.length < 200; ts = a.next(7)) for (const t of ts) { a.done(t); prefix.push(t); }
  const plain = sched(spec);
  const compacted = sched(spec);
  for (const t of prefix) { plain.restore(t); compacted.restore(t); }
  const stale = (s: Scheduler) => (s as unknown as { kinds: { ready: number[]; head: number }[] }).kinds.reduce((n, k) => n + k.ready.length - k.head, 0);
  const before = stale(compacted);
  compacted.compact();
  assert.ok(stale(compacted) < before, `stale entries dropped: ${before} → ${stale(compacted)}`);
  const order = (s: Scheduler) => {
    const out: string[] = [];
    for (let ts = s.next(5); ts.length; ts = s.next(5)) for (const t of ts) { s.done(t); out.push(taskId(t)); }
    return out;
  };
  const p = order(plain);
  assert.deepEqual(order(compacted), p);
  assert.ok(plain.finished && compacted.finished && p.length > 0);
});
