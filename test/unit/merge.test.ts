import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxOfShape, intersect, isEmpty, shapeOf, volumeOf } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import { type Fragment, type FragmentOptions, type OwnerChunk, byFragment, extractFragments, latticeOf } from '../../shared/pipeline/boxes-fragments.ts';
import { type MergeOptions, type OwnedBox, components, latticeTiles, mergeFragments } from '../../shared/pipeline/boxes-merge.ts';
import { checkChunkForBoxes } from '../../shared/tasks/graph.ts';
import { preset } from '../../shared/config/presets.ts';
import type { TesseraConfig } from '../../shared/config/config.ts';
import { randInt, rng } from '../helpers/rng.ts';

// ---------------------------------------------------------------- independent helpers

type Mode = MergeOptions['mode'];

function indicesOf(lo: Vec3, hi: Vec3): Vec3[] {
  const out: Vec3[] = [];
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) out.push([z, y, x]);
  return out;
}

const key = (i: readonly number[]) => i.join(',');
const bkey = (b: Box) => `${b.begin.join(',')}:${b.end.join(',')}`;
const vadd = (a: Vec3, b: Vec3) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]] as unknown as Vec3;
const vmul = (a: Vec3, b: Vec3) => [a[0] * b[0], a[1] * b[1], a[2] * b[2]] as unknown as Vec3;

/** The chunk grid of a volume: indices [0, ceil(shape / chunk)). */
function gridOf(shape: Vec3, chunk: Vec3): Vec3[] {
  return indicesOf([0, 0, 0], [0, 1, 2].map((a) => Math.ceil(shape[a] / chunk[a])) as unknown as Vec3);
}

/** A chunk's write box: its grid cell clipped to the volume. */
function writeBox(i: Vec3, chunk: Vec3, shape: Vec3): Box {
  return intersect(box(vmul(i, chunk), vmul(vadd(i, [1, 1, 1]), chunk)), boxOfShape(shape));
}

/** Boxes are 26-adjacent or overlap (no voxel of gap along any axis). */
function touching(a: Box, b: Box): boolean {
  return [0, 1, 2].every((k) => a.begin[k] <= b.end[k] && b.begin[k] <= a.end[k]);
}

/** "The centre voxel of its box". */
function centre(b: Box): Vec3 {
  return [0, 1, 2].map((a) => Math.floor((b.begin[a] + b.end[a]) / 2)) as unknown as Vec3;
}

function inside(b: Box, p: Vec3): boolean {
  return [0, 1, 2].every((a) => p[a] >= b.begin[a] && p[a] < b.end[a]);
}

function fitsIn(b: Box, limit: Vec3): boolean {
  const s = shapeOf(b);
  return s[0] <= limit[0] && s[1] <= limit[1] && s[2] <= limit[2];
}

/** Every lattice tile (origin-aligned, clipped to the volume) that meets `b`, by scanning the lattice. */
function tilesMeeting(b: Box, tile: Vec3, shape: Vec3): Box[] {
  const out: Box[] = [];
  for (const t of gridOf(shape, tile)) {
    const tb = writeBox(t, tile, shape);
    if (!isEmpty(intersect(tb, b))) out.push(tb);
  }
  return out;
}

/** The same tiles as `Fragment.tiles` lists them: flat [z, y, x] tile indices in z, y, x order. */
function tileIndices(b: Box, tile: Vec3, shape: Vec3): number[] {
  return tilesMeeting(b, tile, shape).flatMap((t) => [0, 1, 2].map((a) => t.begin[a] / tile[a]));
}

function shuffle<T>(r: () => number, list: T[]): T[] {
  const a = [...list];
  for (let i = a.length - 1; i > 0; i--) {
    const j = randInt(r, 0, i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// ---------------------------------------------------------------- the chunk condition

interface BoxParams {
  cropThreshold: Vec3;
  recrop: Vec3;
  mode: Mode;
}

function configFor(chunk: Vec3, p: BoxParams): TesseraConfig {
  const base = preset('synthetic-em')!;
  return {
    ...base,
    io: { ...base.io, chunk },
    boxes: { ...base.boxes, priorDownsample: [1, 1, 1], margin: [0, 0, 0], cropThreshold: p.cropThreshold, recrop: p.recrop, mode: p.mode },
  };
}

/** The smallest chunk checkChunkForBoxes accepts (cells = voxels: factor 1, priorDownsample 1, no margin). */
function minimalChunk(p: BoxParams): Vec3 {
  const c = [300, 300, 300];
  checkChunkForBoxes(configFor(c as unknown as Vec3, p), [1, 1, 1]);
  for (let a = 0; a < 3; a++) {
    for (;;) {
      const t = [...c];
      t[a]--;
      try {
        checkChunkForBoxes(configFor(t as unknown as Vec3, p), [1, 1, 1]);
      } catch {
        break;
      }
      c[a]--;
    }
  }
  return c as unknown as Vec3;
}

const CT: Vec3 = [5, 6, 7];
const RECROP: Vec3 = [3, 4, 5];

// ---------------------------------------------------------------- synthetic objects → fragments

/**
 * Objects on the volume: some placed on purpose (a whole-crop-sized object and a tiny one across
 * the corner shared by 8 chunks, large objects spanning chunks, one at the volume's far corner, one
 * a voxel too long), then random ones. No two objects touch, so each object is one component.
 */
function makeObjects(r: () => number, shape: Vec3, chunk: Vec3, ct: Vec3, count: number): { objects: Box[]; corner: Box[]; large: Box[] } {
  const objects: Box[] = [];
  const add = (b: Box): boolean => {
    const c = intersect(b, boxOfShape(shape));
    if (isEmpty(c) || objects.some((o) => touching(o, c))) return false;
    objects.push(c);
    return true;
  };
  const q1 = chunk;
  const q2: Vec3 = [2 * chunk[0], 2 * chunk[1], chunk[2]];
  const cornerBig = box(vadd(q1, [-2, -3, -3]), vadd(vadd(q1, [-2, -3, -3]), ct));
  const cornerSmall = box(vadd(q2, [-1, -1, -1]), vadd(q2, [1, 1, 1]));
  const large1 = box([1, 2, 2 * chunk[2] + 1], [Math.floor(1.5 * chunk[0]), 2 * chunk[1] - 3, shape[2] - 3]);
  const large2 = box([shape[0] - ct[0] - 3, shape[1] - ct[1] - 4, shape[2] - chunk[2] - 2], shape);
  const tooLong = box(vadd(vmul(chunk, [3, 1, 1]), [-3, -2, -2]), vadd(vmul(chunk, [3, 1, 1]), [ct[0] - 2, 1, 1]));
  for (const b of [cornerBig, cornerSmall, large1, large2, tooLong]) assert.ok(add(b), `special object ${bkey(b)} placed`);
  const corner = [cornerBig, cornerSmall];
  for (let t = 0; t < count * 20 && objects.length < count + 5; t++) {
    // Large objects are long along one to three random axes and may be thin along the others:
    // the hard case is a long thin object whose end a chunk sees only a crop-sized part of.
    const big = r() < 0.3;
    const long = [0, 1, 2].map(() => big && r() < 0.5);
    if (big && !long.some((x) => x)) long[randInt(r, 0, 3)] = true;
    const size = [0, 1, 2].map((a) => (long[a] ? randInt(r, ct[a] + 1, 2 * chunk[a] + ct[a]) : randInt(r, 1, ct[a] + 1)));
    const begin = [0, 1, 2].map((a) => randInt(r, 0, shape[a] - 1));
    add(box(begin as unknown as Vec3, begin.map((v, a) => v + size[a]) as unknown as Vec3));
  }
  const large = objects.filter((o) => !fitsIn(o, ct));
  assert.ok(large.length >= 3);
  return { objects, corner, large };
}

/**
 * Split objects into per-chunk fragments the way stage one does with cells = voxels: a fragment
 * is an object's part inside one chunk's write box, its box is its cells (no margin), its score
 * its voxel count. `block`: chunks per stage-one block (fragments of one block carry the object
 * as their region label).
 */
function split(objects: readonly Box[], shape: Vec3, chunk: Vec3, block: Vec3, p: BoxParams): Map<string, Fragment[]> {
  const lattice = latticeOf(p);
  const out = new Map<string, Fragment[]>();
  for (const c of gridOf(shape, chunk)) {
    const w = writeBox(c, chunk, shape);
    const list: Fragment[] = [];
    objects.forEach((o, n) => {
      const cells = intersect(o, w);
      if (isEmpty(cells)) return;
      list.push({
        chunk: c, cells, box: cells, score: volumeOf(cells),
        block: [0, 1, 2].map((a) => Math.floor(c[a] / block[a])) as unknown as Vec3, region: n + 1,
        tiles: tileIndices(cells, lattice, shape),
      });
    });
    out.set(key(c), list);
  }
  return out;
}

function mergeOptions(shape: Vec3, p: BoxParams): MergeOptions {
  return { nmmThreshold: 0.35, metric: 'iou', mode: p.mode, recrop: p.recrop, cropThreshold: p.cropThreshold, minShape: [1, 1, 1], bounds: boxOfShape(shape) };
}

/** The boxes task of every chunk: its fragments and its 26 neighbours' → mergeFragments. */
function mergeAll(frags: Map<string, Fragment[]>, shape: Vec3, chunk: Vec3, o: MergeOptions, shuffleSeed?: number): Map<string, OwnedBox[]> {
  const r = shuffleSeed === undefined ? undefined : rng(shuffleSeed);
  const out = new Map<string, OwnedBox[]>();
  for (const c of gridOf(shape, chunk)) {
    let near: Fragment[] = [];
    for (const n of indicesOf(vadd(c, [-1, -1, -1]), vadd(c, [2, 2, 2]))) near.push(...(frags.get(key(n)) ?? []));
    if (r) near = shuffle(r, near);
    out.set(key(c), mergeFragments(near, writeBox(c, chunk, shape), o));
  }
  return out;
}

/** The exactness invariant of the boxes step, checked across every chunk's output. */
function checkExact(
  objects: readonly Box[], out: Map<string, OwnedBox[]>, shape: Vec3, chunk: Vec3, p: BoxParams, scoreOf: (o: Box) => number = volumeOf,
): { parents: number; tiles: number } {
  const lattice = p.mode === 'parents' ? p.cropThreshold : p.recrop;
  const small = (o: Box) => p.mode !== 'children' && fitsIn(o, p.cropThreshold);
  const parents = new Map<string, number>();
  const tiles = new Map<string, Box>();
  const covered = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (const c of gridOf(shape, chunk)) {
    const owned = out.get(key(c))!;
    const w = writeBox(c, chunk, shape);
    owned.forEach((b, i) => {
      assert.equal(b.id, i, 'ids are 0.. in order');
      assert.ok(inside(w, centre(b.box)), `chunk ${c} emitted ${bkey(b.box)} whose centre it does not own`);
      if (b.role === 'parent') {
        parents.set(bkey(b.box), (parents.get(bkey(b.box)) ?? 0) + 1);
        const o = objects.find((x) => bkey(x) === bkey(b.box));
        assert.ok(o, `parent ${bkey(b.box)} (chunk ${c}) is not the box of an object`);
        assert.ok(Math.abs(b.score - scoreOf(o)) <= 1e-6 * scoreOf(o), `a whole object scores its mass: ${b.score} vs ${scoreOf(o)}`);
      } else {
        assert.ok(!tiles.has(bkey(b.box)), `tile ${bkey(b.box)} emitted twice (again by chunk ${c})`);
        tiles.set(bkey(b.box), b.box);
        for (let a = 0; a < 3; a++) {
          assert.equal(b.box.begin[a] % lattice[a], 0, `tile ${bkey(b.box)} is not on the lattice`);
          assert.equal(b.box.end[a], Math.min(b.box.begin[a] + lattice[a], shape[a]), `tile ${bkey(b.box)} is not a lattice tile`);
        }
      }
      const bb = intersect(b.box, boxOfShape(shape));
      for (let z = bb.begin[0]; z < bb.end[0]; z++) for (let y = bb.begin[1]; y < bb.end[1]; y++) {
        covered.fill(1, (z * shape[1] + y) * shape[2] + bb.begin[2], (z * shape[1] + y) * shape[2] + bb.end[2]);
      }
    });
  }
  // Every object's voxels are covered.
  for (const o of objects) {
    for (let z = o.begin[0]; z < o.end[0]; z++) for (let y = o.begin[1]; y < o.end[1]; y++) for (let x = o.begin[2]; x < o.end[2]; x++) {
      assert.equal(covered[(z * shape[1] + y) * shape[2] + x], 1, `voxel ${[z, y, x]} of object ${bkey(o)} is not covered`);
    }
  }
  // Small objects: exactly one parent each, equal to the object's box; large ones: none.
  for (const o of objects) {
    assert.equal(parents.get(bkey(o)) ?? 0, small(o) ? 1 : 0, `parents emitted for ${small(o) ? 'small' : 'large'} object ${bkey(o)}`);
  }
  for (const [k, n] of parents) assert.equal(n, 1, `parent ${k} emitted ${n} times`);
  // Large objects: exactly the lattice tiles that meet them, no gaps.
  const large = objects.filter((o) => !small(o));
  for (const o of large) {
    const want = tilesMeeting(o, lattice, shape).map(bkey).sort();
    const got = [...tiles.values()].filter((t) => !isEmpty(intersect(t, o))).map(bkey).sort();
    assert.deepEqual(got, want, `tiles of large object ${bkey(o)}`);
  }
  // And no tile that meets no large object.
  for (const t of tiles.values()) assert.ok(large.some((o) => !isEmpty(intersect(t, o))), `tile ${bkey(t)} meets no large object`);
  return { parents: parents.size, tiles: tiles.size };
}

function scenario(seed: number, p: BoxParams, chunk: Vec3) {
  const shape: Vec3 = [3 * chunk[0] + 4, 3 * chunk[1] + 3, 3 * chunk[2] + 5];
  const r = rng(seed);
  const { objects, corner, large } = makeObjects(r, shape, chunk, p.cropThreshold, 25);
  return { shape, objects, corner, large };
}

// ---------------------------------------------------------------- the chunk condition itself

test('the minimal chunks used here satisfy checkChunkForBoxes, and one voxel less does not', () => {
  for (const mode of ['auto', 'parents', 'children'] as const) {
    const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode };
    const m = minimalChunk(p);
    assert.doesNotThrow(() => checkChunkForBoxes(configFor(m, p), [1, 1, 1]));
    for (let a = 0; a < 3; a++) {
      // A chunk must hold a whole crop-sized box and more.
      assert.ok(m[a] > CT[a], `${mode}: chunk ${m} along ${a}`);
      const t = [...m] as unknown as [number, number, number];
      t[a]--;
      assert.throws(() => checkChunkForBoxes(configFor(t, p), [1, 1, 1]));
    }
  }
});

// ---------------------------------------------------------------- exactness

test('auto mode at the smallest allowed chunk: every object covered, small ones once and whole, large ones tiled without gaps or repeats', () => {
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'auto' };
  const chunk = minimalChunk(p);
  for (let seed = 1; seed <= 5; seed++) {
    const { shape, objects, corner } = scenario(seed, p, chunk);
    const out = mergeAll(split(objects, shape, chunk, [1, 1, 1], p), shape, chunk, mergeOptions(shape, p));
    const n = checkExact(objects, out, shape, chunk, p);
    assert.ok(n.parents > 0 && n.tiles > 0);
    // The objects across the corner shared by 8 chunks: 8 fragments each, one parent equal to the object.
    for (const o of corner) {
      let owners = 0;
      for (const c of gridOf(shape, chunk)) if (!isEmpty(intersect(o, writeBox(c, chunk, shape)))) owners++;
      assert.equal(owners, 8, `${bkey(o)} spans 8 chunks`);
      const emitted = [...out.values()].flat().filter((b) => b.role === 'parent' && bkey(b.box) === bkey(o));
      assert.equal(emitted.length, 1);
    }
  }
});

test('auto mode at a larger chunk, and parents / children modes at their smallest allowed chunk', () => {
  const cases: Array<{ p: BoxParams; grow: Vec3 }> = [
    { p: { cropThreshold: CT, recrop: RECROP, mode: 'auto' }, grow: [2, 5, 1] },
    { p: { cropThreshold: CT, recrop: RECROP, mode: 'parents' }, grow: [0, 0, 0] },
    { p: { cropThreshold: CT, recrop: RECROP, mode: 'children' }, grow: [0, 0, 0] },
    { p: { cropThreshold: [4, 4, 4], recrop: [4, 4, 4], mode: 'auto' }, grow: [0, 0, 0] },
  ];
  for (const { p, grow } of cases) {
    const chunk = vadd(minimalChunk(p), grow);
    for (let seed = 11; seed <= 13; seed++) {
      const { shape, objects } = scenario(seed, p, chunk);
      const out = mergeAll(split(objects, shape, chunk, [1, 1, 1], p), shape, chunk, mergeOptions(shape, p));
      const n = checkExact(objects, out, shape, chunk, p);
      assert.ok(n.tiles > 0, `${p.mode}: some tiles`);
      if (p.mode === 'children') assert.equal(n.parents, 0);
    }
  }
});

test('fragments computed by blocks of several chunks (joined by region label) give the same boxes as per-chunk blocks', () => {
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'auto' };
  const chunk = minimalChunk(p);
  for (let seed = 21; seed <= 23; seed++) {
    const { shape, objects } = scenario(seed, p, chunk);
    const o = mergeOptions(shape, p);
    const perChunk = mergeAll(split(objects, shape, chunk, [1, 1, 1], p), shape, chunk, o);
    for (const block of [[1, 2, 2], [2, 1, 3], [4, 4, 4]] as Vec3[]) {
      const out = mergeAll(split(objects, shape, chunk, block, p), shape, chunk, o);
      checkExact(objects, out, shape, chunk, p);
      assert.deepEqual(out, perChunk, `blocks of ${block}`);
    }
  }
});

test('looking only at fragments within the merge reach of the owner gives the same boxes as looking at all 27 chunks', () => {
  for (const mode of ['auto', 'children', 'parents'] as const) {
    const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode };
    const chunk = minimalChunk(p);
    const tile = mode === 'parents' ? CT : RECROP;
    // tasks/graph.ts mergeReach with cell 1 and margin 0.
    const reach = [0, 1, 2].map((a) => CT[a] + Math.ceil(tile[a] / 2) + 2) as unknown as Vec3;
    for (let seed = 51; seed <= 53; seed++) {
      const { shape, objects } = scenario(seed, p, chunk);
      const frags = split(objects, shape, chunk, [1, 2, 2], p);
      const all = mergeAll(frags, shape, chunk, mergeOptions(shape, p));
      const shell = mergeAll(frags, shape, chunk, { ...mergeOptions(shape, p), reach });
      assert.deepEqual(shell, all, `${mode}, seed ${seed}`);
    }
  }
});

test('the result does not depend on the order of the input fragments', () => {
  for (const mode of ['auto', 'children', 'parents'] as const) {
    const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode };
    const chunk = minimalChunk(p);
    const { shape, objects } = scenario(31, p, chunk);
    const frags = split(objects, shape, chunk, [1, 2, 2], p);
    const o = mergeOptions(shape, p);
    const ref = mergeAll(frags, shape, chunk, o);
    for (let seed = 1; seed <= 4; seed++) assert.deepEqual(mergeAll(frags, shape, chunk, o, 1000 + seed), ref, `${mode}, shuffle ${seed}`);
  }
});

test('order independence with overlapping objects in one chunk (links by NMM) and touching objects across chunks', () => {
  // Objects that do touch or overlap: components are decided by links, and must not depend on the order.
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'auto' };
  const chunk = minimalChunk(p);
  const shape: Vec3 = vadd(vmul(chunk, [3, 3, 3]), [2, 2, 2]);
  const r = rng(41);
  const objects: Box[] = [];
  for (let t = 0; t < 60; t++) {
    const begin = [0, 1, 2].map((a) => randInt(r, 0, shape[a] - 1));
    const size = [0, 1, 2].map((a) => randInt(r, 1, CT[a] + 3));
    objects.push(intersect(box(begin as unknown as Vec3, begin.map((v, a) => v + size[a]) as unknown as Vec3), boxOfShape(shape)));
  }
  const frags = split(objects, shape, chunk, [1, 1, 1], p);
  const o = mergeOptions(shape, p);
  const ref = mergeAll(frags, shape, chunk, o);
  for (let seed = 1; seed <= 4; seed++) assert.deepEqual(mergeAll(frags, shape, chunk, o, 2000 + seed), ref, `shuffle ${seed}`);
  // Still: every voxel of every object is covered by some emitted box.
  const all = [...ref.values()].flat().map((b) => b.box);
  for (const ob of objects) {
    for (const v of indicesOf(ob.begin, ob.end)) assert.ok(all.some((b) => inside(b, v)), `voxel ${v} of ${bkey(ob)} not covered`);
  }
  // components(): the same partition of fragments in any order.
  const c0 = [...frags.values()].flat();
  const sig = (list: Fragment[]) => components(list, o).map((g) => g.map((f) => `${key(f.chunk)}|${bkey(f.cells)}`).sort().join(';')).sort();
  for (let seed = 1; seed <= 3; seed++) assert.deepEqual(sig(shuffle(rng(seed), c0)), sig(c0));
});

test('latticeTiles: over every chunk, each lattice tile meeting a box comes out once (owned by the chunk holding its centre)', () => {
  const shape: Vec3 = [23, 31, 19];
  const chunk: Vec3 = [7, 9, 8];
  const tile: Vec3 = [3, 4, 5];
  const r = rng(51);
  for (let t = 0; t < 100; t++) {
    const begin = [0, 1, 2].map((a) => randInt(r, -2, shape[a]));
    const b = box(begin as unknown as Vec3, begin.map((v, a) => v + randInt(r, 1, 12)) as unknown as Vec3);
    const seen = new Map<string, number>();
    for (const c of gridOf(shape, chunk)) {
      const w = writeBox(c, chunk, shape);
      for (const x of latticeTiles(b, tile, w, boxOfShape(shape))) {
        assert.ok(inside(w, centre(x)));
        seen.set(bkey(x), (seen.get(bkey(x)) ?? 0) + 1);
      }
    }
    const want = tilesMeeting(b, tile, shape).map(bkey).sort();
    assert.deepEqual([...seen.keys()].sort(), want, bkey(b));
    for (const [k, n] of seen) assert.equal(n, 1, k);
  }
});

// ---------------------------------------------------------------- extractFragments

interface Painted {
  heat: Float32Array;
  /** Foreground cells (global cell coordinates) as boxes; they never touch. */
  regions: Box[];
}

/**
 * A stage-one heatmap on `low` voxels whose foreground, pooled by max over cells of `pd`, is
 * exactly `regions` (random cell boxes, some across chunk borders): below-threshold noise
 * everywhere, and in every region cell one hot voxel above it.
 */
function paint(r: () => number, low: Vec3, pd: Vec3, chunkLow: Vec3, threshold: number): Painted {
  const heat = new Float32Array(low[0] * low[1] * low[2]);
  for (let i = 0; i < heat.length; i++) heat[i] = r() * threshold * 0.9;
  const ncell = [0, 1, 2].map((a) => Math.ceil(low[a] / pd[a])) as unknown as Vec3;
  const regions: Box[] = [];
  const add = (b: Box) => {
    const c = intersect(b, boxOfShape(ncell));
    if (isEmpty(c) || regions.some((o) => touching(o, c))) return;
    regions.push(c);
  };
  // One region across the corner of 8 chunks (in cells).
  const corner = [0, 1, 2].map((a) => Math.floor(chunkLow[a] / pd[a])) as unknown as Vec3;
  add(box(vadd(corner, [-1, -1, -1]), vadd(corner, [2, 1, 2])));
  for (let t = 0; t < 80; t++) {
    const begin = [0, 1, 2].map((a) => randInt(r, 0, ncell[a]));
    add(box(begin as unknown as Vec3, begin.map((v, a) => v + randInt(r, 1, 5)) as unknown as Vec3));
  }
  for (const g of regions) {
    for (const c of indicesOf(g.begin, g.end)) {
      // Voxels of the cell inside the volume; one of them hot.
      const lo = vmul(c, pd);
      const hi = [0, 1, 2].map((a) => Math.min(low[a], (c[a] + 1) * pd[a]));
      const v = [0, 1, 2].map((a) => randInt(r, lo[a], hi[a]));
      heat[(v[0] * low[1] + v[1]) * low[2] + v[2]] = threshold + 0.05 + 0.9 * r();
    }
  }
  return { heat, regions };
}

function cropHeat(heat: Float32Array, low: Vec3, b: Box) {
  const s = shapeOf(b);
  const out = new Float32Array(s[0] * s[1] * s[2]);
  for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) for (let x = 0; x < s[2]; x++) {
    out[(z * s[1] + y) * s[2] + x] = heat[((b.begin[0] + z) * low[1] + b.begin[1] + y) * low[2] + b.begin[2] + x];
  }
  return array3(out, s);
}

interface BlockRun {
  block: Vec3;
  owners: OwnerChunk[];
  fragments: Fragment[][];
}

/** Stage one block by block: each block sees its chunks plus a halo, and reports its chunks' fragments. */
function extractAll(p: Painted, low: Vec3, chunkLow: Vec3, blockChunks: Vec3, halo: Vec3, o: FragmentOptions): BlockRun[] {
  const runs: BlockRun[] = [];
  const chunkGrid = [0, 1, 2].map((a) => Math.ceil(low[a] / chunkLow[a]));
  const blocks = indicesOf([0, 0, 0], [0, 1, 2].map((a) => Math.ceil(chunkGrid[a] / blockChunks[a])) as unknown as Vec3);
  for (const b of blocks) {
    const owners: OwnerChunk[] = [];
    for (const c of indicesOf(vmul(b, blockChunks), vmul(vadd(b, [1, 1, 1]), blockChunks))) {
      if (c.some((v, a) => v >= chunkGrid[a])) continue;
      owners.push({ index: c, low: writeBox(c, chunkLow, low) });
    }
    const first = owners[0].low;
    const last = owners[owners.length - 1].low;
    const window = intersect(box(vadd(first.begin, [-halo[0], -halo[1], -halo[2]]), vadd(last.end, halo)), boxOfShape(low));
    runs.push({ block: b, owners, fragments: extractFragments(cropHeat(p.heat, low, window), window.begin, owners, b, o) });
  }
  return runs;
}

function fragmentOptions(low: Vec3, pd: Vec3, factor: Vec3, margin: Vec3, threshold: number, nms: number, lattice: Vec3 = RECROP): FragmentOptions {
  return {
    priorDownsample: pd, pooling: 'max', roiThreshold: threshold, axisThr: 0, areaThr: 0,
    factor, margin, minShape: [1, 1, 1], bounds: boxOfShape(vmul(low, factor)), lowVolume: low,
    nmsThreshold: nms, metric: 'iou', lattice,
  };
}

test('extractFragments: the fragments of all owners partition the foreground cells, each inside its owner\'s low box', () => {
  const cases: Array<{ low: Vec3; chunkLow: Vec3; pd: Vec3; blockChunks: Vec3; factor: Vec3; margin: Vec3; nms: number }> = [
    { low: [20, 26, 30], chunkLow: [7, 9, 10], pd: [1, 1, 1], blockChunks: [1, 2, 2], factor: [1, 1, 1], margin: [0, 0, 0], nms: 1 },
    { low: [20, 26, 30], chunkLow: [7, 9, 10], pd: [2, 3, 3], blockChunks: [1, 2, 2], factor: [2, 1, 1], margin: [1, 0, 2], nms: 1 },
    { low: [17, 29, 23], chunkLow: [6, 8, 7], pd: [1, 2, 3], blockChunks: [2, 1, 2], factor: [1, 3, 2], margin: [0, 2, 1], nms: 0.75 },
  ];
  const threshold = 0.5;
  for (const [n, k] of cases.entries()) {
    const r = rng(60 + n);
    const painted = paint(r, k.low, k.pd, k.chunkLow, threshold);
    const o = fragmentOptions(k.low, k.pd, k.factor, k.margin, threshold, k.nms);
    const halo = vadd(k.pd, [1, 1, 1]);
    const runs = extractAll(painted, k.low, k.chunkLow, k.blockChunks, halo, o);
    const ncell = [0, 1, 2].map((a) => Math.ceil(k.low[a] / k.pd[a])) as unknown as Vec3;
    const all: Array<{ f: Fragment; owner: OwnerChunk }> = [];
    for (const run of runs) {
      assert.equal(run.fragments.length, run.owners.length);
      run.owners.forEach((w, i) => {
        const list = run.fragments[i];
        for (let j = 1; j < list.length; j++) assert.ok(byFragment(list[j - 1], list[j]) <= 0, 'fragments sorted by byFragment');
        for (const f of list) {
          assert.deepEqual(f.chunk, w.index);
          assert.deepEqual(f.block, run.block);
          // Cells lie inside the owner's low box: every cell's first voxel is in it.
          for (let a = 0; a < 3; a++) {
            assert.ok(f.cells.begin[a] * k.pd[a] >= w.low.begin[a] && (f.cells.end[a] - 1) * k.pd[a] < w.low.end[a], `fragment cells ${bkey(f.cells)} outside owner ${w.index}`);
          }
          all.push({ f, owner: w });
        }
      });
    }
    assert.ok(all.length > painted.regions.length, 'some regions were cut by chunk borders');
    // Partition: a foreground cell is in exactly one fragment, of the chunk holding its first voxel; background cells in none.
    const fg = new Set<string>();
    for (const g of painted.regions) for (const c of indicesOf(g.begin, g.end)) fg.add(key(c));
    for (const c of indicesOf([0, 0, 0], ncell)) {
      const holders = all.filter(({ f }) => inside(f.cells, c));
      if (!fg.has(key(c))) {
        assert.equal(holders.length, 0, `background cell ${c} in a fragment`);
        continue;
      }
      assert.equal(holders.length, 1, `foreground cell ${c} in ${holders.length} fragments`);
      const ownerIndex = [0, 1, 2].map((a) => Math.floor((c[a] * k.pd[a]) / k.chunkLow[a]));
      assert.deepEqual([...holders[0].f.chunk], ownerIndex, `cell ${c}`);
    }
    for (const { f } of all) {
      // A fragment is one region's cells in one chunk: its cells box holds only foreground cells.
      for (const c of indicesOf(f.cells.begin, f.cells.end)) assert.ok(fg.has(key(c)), `fragment ${bkey(f.cells)} holds background cell ${c}`);
      // Score: heat mass of its cells' voxels × full-res voxels per stage-one voxel.
      let mass = 0;
      const vlo = vmul(f.cells.begin, k.pd);
      const vhi = [0, 1, 2].map((a) => Math.min(k.low[a], f.cells.end[a] * k.pd[a])) as unknown as Vec3;
      for (const v of indicesOf(vlo, vhi)) mass += painted.heat[(v[0] * k.low[1] + v[1]) * k.low[2] + v[2]];
      const vv = k.factor[0] * k.factor[1] * k.factor[2];
      assert.ok(Math.abs(f.score - mass * vv) <= 1e-6 * Math.max(1, mass * vv), `score ${f.score} vs ${mass * vv}`);
      // Box: the cells' voxels at full resolution, grown by the margin, clipped to the volume.
      const full = vmul(k.low, k.factor);
      const want = intersect(box(
        [0, 1, 2].map((a) => vlo[a] * k.factor[a] - k.margin[a]) as unknown as Vec3,
        [0, 1, 2].map((a) => vhi[a] * k.factor[a] + k.margin[a]) as unknown as Vec3,
      ), boxOfShape(full));
      assert.deepEqual(f.box, want, `box of cells ${bkey(f.cells)}`);
      // Tiles: the painted regions are boxes of cells, so its cells' boxes fill its box.
      assert.deepEqual(f.tiles, tileIndices(f.box, RECROP, full), `tiles of cells ${bkey(f.cells)}`);
    }
    // Fragments of one region computed by one block share its region label; different regions do not.
    for (const run of runs) {
      const labelOf = new Map<number, number>();
      for (const list of run.fragments) {
        for (const f of list) {
          const g = painted.regions.findIndex((x) => !isEmpty(intersect(x, f.cells)));
          assert.ok(g >= 0);
          const prev = labelOf.get(g);
          if (prev !== undefined) assert.equal(f.region, prev, `region ${g} has two labels in block ${run.block}`);
          labelOf.set(g, f.region);
        }
      }
      assert.equal(new Set(labelOf.values()).size, labelOf.size, `two regions share a label in block ${run.block}`);
    }
  }
});

test('the tiles of an L-shaped object do not depend on the chunking: only tiles its cells (grown by the margin) meet, none for the empty corner', () => {
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'children' };
  const small = minimalChunk(p);
  const low: Vec3 = vadd(vmul(small, [2, 3, 3]), [1, 2, 3]);
  const margin: Vec3 = [0, 1, 1];
  const threshold = 0.5;
  const heat = new Float32Array(low[0] * low[1] * low[2]).fill(0.1);
  // Two arms from one corner, each spanning several tiles and chunks; the region between them is empty.
  const z0 = 2, y0 = 3, x0 = 4;
  const arms = [box([z0, y0, x0], [z0 + 2, y0 + 6 * RECROP[1], x0 + 2]), box([z0, y0, x0], [z0 + 2, y0 + 2, x0 + 6 * RECROP[2]])];
  for (const g of arms) for (const v of indicesOf(g.begin, g.end)) heat[(v[0] * low[1] + v[1]) * low[2] + v[2]] = 0.9;
  const o = fragmentOptions(low, [1, 1, 1], [1, 1, 1], margin, threshold, 1, RECROP);
  const want = new Set<string>();
  for (const g of arms) {
    for (const t of tilesMeeting(intersect(box(vadd(g.begin, vmul(margin, [-1, -1, -1])), vadd(g.end, margin)), boxOfShape(low)), RECROP, low)) want.add(bkey(t));
  }
  const tilesWith = (chunk: Vec3) => {
    const frags = new Map<string, Fragment[]>();
    for (const run of extractAll({ heat, regions: arms }, low, chunk, [1, 1, 1], [2, 2, 2], o)) run.owners.forEach((w, i) => frags.set(key(w.index), run.fragments[i]));
    const out = [...mergeAll(frags, low, chunk, mergeOptions(low, p)).values()].flat();
    assert.ok(out.every((b) => b.role === 'child'));
    return out.map((b) => bkey(b.box)).sort();
  };
  const whole = tilesWith(low);
  assert.deepEqual(whole, [...want].sort(), 'one chunk: the tiles the cells need');
  for (const chunk of [small, vadd(small, [1, 3, 2])]) assert.deepEqual(tilesWith(chunk), whole, `chunk ${chunk}`);
  // The bounding box's far corner tile is not among them.
  const corner = tilesMeeting(box([z0, y0 + 6 * RECROP[1] - 1, x0 + 6 * RECROP[2] - 1], [z0 + 1, y0 + 6 * RECROP[1], x0 + 6 * RECROP[2]]), RECROP, low);
  assert.ok(!whole.includes(bkey(corner[0])));
});

test('extractFragments → mergeFragments end to end: every region of the heatmap comes out once, whole, or tiled', () => {
  // Cells = stage-one voxels = full-resolution voxels; chunk at the smallest size the condition allows.
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'auto' };
  const chunk = minimalChunk(p);
  const low: Vec3 = vadd(vmul(chunk, [3, 2, 3]), [3, 5, 2]);
  const threshold = 0.5;
  for (let seed = 71; seed <= 73; seed++) {
    const r = rng(seed);
    const painted = paint(r, low, [1, 1, 1], chunk, threshold);
    // Add large regions spanning chunks (painted as boxes of hot voxels), not touching the others.
    for (const big of [box([1, 1, 1], [2 * chunk[0] - 1, chunk[1] + 3, 2]), box([chunk[0] + 2, 2, 2 * chunk[2]], [3 * chunk[0] + 1, 3, low[2]])]) {
      painted.regions.splice(0, painted.regions.length, ...painted.regions.filter((g) => !touching(g, big)));
      painted.regions.push(big);
    }
    // Repaint from the region list: noise below the threshold, regions hot.
    painted.heat.fill(0.1);
    for (const g of painted.regions) for (const v of indicesOf(g.begin, g.end)) painted.heat[(v[0] * low[1] + v[1]) * low[2] + v[2]] = 0.9;
    const o = fragmentOptions(low, [1, 1, 1], [1, 1, 1], [0, 0, 0], threshold, 0.75);
    const runs = extractAll(painted, low, chunk, [1, 2, 2], [2, 2, 2], o);
    const frags = new Map<string, Fragment[]>();
    for (const run of runs) run.owners.forEach((w, i) => frags.set(key(w.index), run.fragments[i]));
    const out = mergeAll(frags, low, chunk, mergeOptions(low, p));
    const n = checkExact(painted.regions, out, low, chunk, p, (g) => Math.fround(0.9) * volumeOf(g));
    assert.ok(n.parents > 0 && n.tiles > 0);
  }
});
