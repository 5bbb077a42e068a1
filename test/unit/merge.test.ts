import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxOfShape, growTo, intersect, isEmpty, shapeOf, volumeOf } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import { type BlockFragments, type Fragment, type FragmentOptions, extractFragments, latticeOf, tilesMeeting as tileIndicesMeeting } from '../../shared/pipeline/boxes-fragments.ts';
import { type MergeOptions, type OwnedBox, mergeFragments, ownedTiles } from '../../shared/pipeline/boxes-merge.ts';
import { Contacts, FORWARD, contactsAcross, touchOf } from '../../shared/pipeline/border.ts';
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

// ---------------------------------------------------------------- objects → heatmap → fragments

/**
 * Objects on the volume: some placed on purpose (a whole-crop-sized object and a tiny one across
 * the corner shared by 8 blocks, large objects spanning blocks, one at the volume's far corner,
 * one a voxel too long), then random ones. No two objects touch, so each object is one region.
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
    // the hard case is a long thin object whose end a block sees only a crop-sized part of.
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

const HOT = 0.9;
const THRESHOLD = 0.5;

/** A heatmap (cells = stage-one voxels = full-resolution voxels) hot on the objects' voxels, cold elsewhere. */
function paintObjects(objects: readonly Box[], shape: Vec3): Float32Array {
  const heat = new Float32Array(shape[0] * shape[1] * shape[2]).fill(0.1);
  for (const o of objects) for (let z = o.begin[0]; z < o.end[0]; z++) for (let y = o.begin[1]; y < o.end[1]; y++) {
    heat.fill(HOT, (z * shape[1] + y) * shape[2] + o.begin[2], (z * shape[1] + y) * shape[2] + o.end[2]);
  }
  return heat;
}

function cropHeat(heat: Float32Array, low: Vec3, b: Box) {
  const s = shapeOf(b);
  const out = new Float32Array(s[0] * s[1] * s[2]);
  for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) for (let x = 0; x < s[2]; x++) {
    out[(z * s[1] + y) * s[2] + x] = heat[((b.begin[0] + z) * low[1] + b.begin[1] + y) * low[2] + b.begin[2] + x];
  }
  return array3(out, s);
}

function fragmentOptions(low: Vec3, pd: Vec3, factor: Vec3, margin: Vec3, lattice: Vec3 = RECROP): FragmentOptions {
  return {
    priorDownsample: pd, pooling: 'max', roiThreshold: THRESHOLD, axisThr: 0, areaThr: 0,
    factor, margin, minShape: [1, 1, 1], bounds: boxOfShape(vmul(low, factor)), lowVolume: low, lattice,
  };
}

/** Stage one block by block (blocks of `block` stage-one voxels): each sees its block plus a halo. */
function extractAll(heat: Float32Array, low: Vec3, block: Vec3, halo: Vec3, o: FragmentOptions): Map<string, BlockFragments> {
  const out = new Map<string, BlockFragments>();
  for (const b of gridOf(low, block)) {
    const w = writeBox(b, block, low);
    const window = intersect(box(vadd(w.begin, vmul(halo, [-1, -1, -1])), vadd(w.end, halo)), boxOfShape(low));
    out.set(key(b), extractFragments(cropHeat(heat, low, window), window.begin, w, b, o));
  }
  return out;
}

function mergeOptions(shape: Vec3, p: BoxParams, extra: Partial<MergeOptions> = {}): MergeOptions {
  return { nmsThreshold: 1, nmmThreshold: 0.35, metric: 'iou', mode: p.mode, recrop: p.recrop, cropThreshold: p.cropThreshold, minShape: [1, 1, 1], bounds: boxOfShape(shape), ...extra };
}

/** graph.ts boxesReach with cells of one voxel and no margin, in voxels. */
function reachOf(p: BoxParams): Vec3 {
  const tile = latticeOf(p);
  return [0, 1, 2].map((a) => 4 * p.cropThreshold[a] + tile[a] + 2) as unknown as Vec3;
}

/** The boxes task of every block: the fragments of the blocks within its view, their borders' contacts → mergeFragments. */
function mergeAll(found: Map<string, BlockFragments>, shape: Vec3, block: Vec3, p: BoxParams, o: MergeOptions, shuffleSeed?: number): Map<string, OwnedBox[]> {
  const r = shuffleSeed === undefined ? undefined : rng(shuffleSeed);
  const reach = reachOf(p).map((v, a) => Math.ceil(v / block[a])) as unknown as Vec3;
  const out = new Map<string, OwnedBox[]>();
  for (const b of gridOf(shape, block)) {
    const view = indicesOf(vadd(b, vmul(reach, [-1, -1, -1])), vadd(vadd(b, reach), [1, 1, 1])).filter((x) => found.has(key(x)));
    const contacts = new Contacts();
    for (const x of view) {
      for (const d of FORWARD) {
        const y = vadd(x, d);
        if (!view.some((v) => key(v) === key(y))) continue;
        const t = touchOf(d);
        contactsAcross(d, found.get(key(x))!.border[t.mine], found.get(key(y))!.border[t.theirs], contacts, 'test');
      }
    }
    let frags = view.flatMap((x) => found.get(key(x))!.fragments);
    if (r) frags = shuffle(r, frags);
    out.set(key(b), mergeFragments(frags, contacts.pairs(), writeBox(b, block, shape), o));
  }
  return out;
}

/** All boxes of a run, as comparable strings (box, role, score), sorted: what must not depend on the blocking. */
function allBoxes(out: Map<string, OwnedBox[]>): string[] {
  return [...out.values()].flat().map((b) => `${bkey(b.box)}|${b.role}|${b.score}`).sort();
}

/** The exactness invariant of the boxes step, checked across every block's output. */
function checkExact(
  objects: readonly Box[], out: Map<string, OwnedBox[]>, shape: Vec3, block: Vec3, p: BoxParams, scoreOf: (o: Box) => number = (o) => Math.fround(HOT) * volumeOf(o),
): { parents: number; tiles: number } {
  const lattice = p.mode === 'parents' ? p.cropThreshold : p.recrop;
  const small = (o: Box) => p.mode !== 'children' && fitsIn(o, p.cropThreshold);
  const parents = new Map<string, number>();
  const tiles = new Map<string, Box>();
  const covered = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (const b of gridOf(shape, block)) {
    const owned = out.get(key(b))!;
    const w = writeBox(b, block, shape);
    owned.forEach((x, i) => {
      assert.equal(x.id, i, 'ids are 0.. in order');
      assert.ok(inside(w, centre(x.box)), `block ${b} emitted ${bkey(x.box)} whose centre it does not own`);
      if (x.role === 'parent') {
        parents.set(bkey(x.box), (parents.get(bkey(x.box)) ?? 0) + 1);
        const o = objects.find((y) => bkey(y) === bkey(x.box));
        assert.ok(o, `parent ${bkey(x.box)} (block ${b}) is not the box of an object`);
        assert.ok(Math.abs(x.score - scoreOf(o)) <= 1e-6 * scoreOf(o), `a whole object scores its mass: ${x.score} vs ${scoreOf(o)}`);
      } else {
        assert.ok(!tiles.has(bkey(x.box)), `tile ${bkey(x.box)} emitted twice (again by block ${b})`);
        tiles.set(bkey(x.box), x.box);
        for (let a = 0; a < 3; a++) {
          assert.equal(x.box.begin[a] % lattice[a], 0, `tile ${bkey(x.box)} is not on the lattice`);
          assert.equal(x.box.end[a], Math.min(x.box.begin[a] + lattice[a], shape[a]), `tile ${bkey(x.box)} is not a lattice tile`);
        }
      }
      const bb = intersect(x.box, boxOfShape(shape));
      for (let z = bb.begin[0]; z < bb.end[0]; z++) for (let y = bb.begin[1]; y < bb.end[1]; y++) {
        covered.fill(1, (z * shape[1] + y) * shape[2] + bb.begin[2], (z * shape[1] + y) * shape[2] + bb.end[2]);
      }
    });
  }
  for (const o of objects) {
    for (let z = o.begin[0]; z < o.end[0]; z++) for (let y = o.begin[1]; y < o.end[1]; y++) for (let x = o.begin[2]; x < o.end[2]; x++) {
      assert.equal(covered[(z * shape[1] + y) * shape[2] + x], 1, `voxel ${[z, y, x]} of object ${bkey(o)} is not covered`);
    }
  }
  for (const o of objects) {
    assert.equal(parents.get(bkey(o)) ?? 0, small(o) ? 1 : 0, `parents emitted for ${small(o) ? 'small' : 'large'} object ${bkey(o)}`);
  }
  for (const [k, n] of parents) assert.equal(n, 1, `parent ${k} emitted ${n} times`);
  const large = objects.filter((o) => !small(o));
  for (const o of large) {
    const want = tilesMeeting(o, lattice, shape).map(bkey).sort();
    const got = [...tiles.values()].filter((t) => !isEmpty(intersect(t, o))).map(bkey).sort();
    assert.deepEqual(got, want, `tiles of large object ${bkey(o)}`);
  }
  for (const t of tiles.values()) assert.ok(large.some((o) => !isEmpty(intersect(t, o))), `tile ${bkey(t)} meets no large object`);
  return { parents: parents.size, tiles: tiles.size };
}

function scenario(seed: number, p: BoxParams, chunk: Vec3) {
  const shape: Vec3 = [3 * chunk[0] + 4, 3 * chunk[1] + 3, 3 * chunk[2] + 5];
  const r = rng(seed);
  const { objects, corner, large } = makeObjects(r, shape, chunk, p.cropThreshold, 25);
  return { shape, objects, corner, large };
}

/** Objects → heatmap → stage one per block → boxes per block. */
function runBoxes(objects: readonly Box[], shape: Vec3, block: Vec3, p: BoxParams, o: MergeOptions, shuffleSeed?: number): Map<string, OwnedBox[]> {
  const found = extractAll(paintObjects(objects, shape), shape, block, [2, 2, 2], fragmentOptions(shape, [1, 1, 1], [1, 1, 1], [0, 0, 0], latticeOf(p)));
  return mergeAll(found, shape, block, p, o, shuffleSeed);
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

test('auto mode: every object covered, small ones once and whole, large ones tiled without gaps or repeats', () => {
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'auto' };
  const chunk = minimalChunk(p);
  for (let seed = 1; seed <= 4; seed++) {
    const { shape, objects, corner } = scenario(seed, p, chunk);
    const out = runBoxes(objects, shape, chunk, p, mergeOptions(shape, p));
    const n = checkExact(objects, out, shape, chunk, p);
    assert.ok(n.parents > 0 && n.tiles > 0);
    // The objects across the corner shared by 8 blocks: one parent equal to the object.
    for (const o of corner) {
      let owners = 0;
      for (const c of gridOf(shape, chunk)) if (!isEmpty(intersect(o, writeBox(c, chunk, shape)))) owners++;
      assert.equal(owners, 8, `${bkey(o)} spans 8 blocks`);
      assert.equal([...out.values()].flat().filter((b) => b.role === 'parent' && bkey(b.box) === bkey(o)).length, 1);
    }
  }
});

test('parents and children modes, and a small cropThreshold', () => {
  const cases: BoxParams[] = [
    { cropThreshold: CT, recrop: RECROP, mode: 'parents' },
    { cropThreshold: CT, recrop: RECROP, mode: 'children' },
    { cropThreshold: [4, 4, 4], recrop: [4, 4, 4], mode: 'auto' },
  ];
  for (const p of cases) {
    const chunk = minimalChunk(p);
    for (let seed = 11; seed <= 12; seed++) {
      const { shape, objects } = scenario(seed, p, chunk);
      const n = checkExact(objects, runBoxes(objects, shape, chunk, p, mergeOptions(shape, p)), shape, chunk, p);
      assert.ok(n.tiles > 0, `${p.mode}: some tiles`);
      if (p.mode === 'children') assert.equal(n.parents, 0);
    }
  }
});

test('the boxes do not depend on how stage one is blocked, with NMS and NMM at work (regions crowded so their crops overlap)', () => {
  // Small objects packed closely and grown to a crop: NMS drops some, NMM joins others, and
  // components grow past cropThreshold into tiles — across block borders of every blocking.
  const p: BoxParams = { cropThreshold: [6, 12, 12], recrop: [3, 6, 6], mode: 'auto' };
  const chunk = minimalChunk(p);
  const shape: Vec3 = vadd(vmul(chunk, [2, 2, 2]), [3, 5, 4]);
  for (let seed = 81; seed <= 83; seed++) {
    const r = rng(seed);
    // Two long objects across blocks (tiled), then small ones packed around.
    const objects: Box[] = [box([1, 2, 1], [3, 4, shape[2] - 2]), box([shape[0] - 3, 1, 5], [shape[0] - 2, shape[1] - 1, 7])];
    for (let t = 0; t < 400 && objects.length < 70; t++) {
      const begin = [0, 1, 2].map((a) => randInt(r, 0, shape[a] - 1));
      const b = intersect(box(begin as unknown as Vec3, begin.map((v, a) => v + randInt(r, 1, 4)) as unknown as Vec3), boxOfShape(shape));
      if (!objects.some((o) => touching(o, b))) objects.push(b);
    }
    const o = mergeOptions(shape, p, { nmsThreshold: 0.3, nmmThreshold: 0.15, minShape: [3, 6, 6] });
    const ref = allBoxes(runBoxes(objects, shape, shape, p, o));
    const stats = { parents: ref.filter((x) => x.includes('|parent|')).length, children: ref.filter((x) => x.includes('|child|')).length };
    assert.ok(stats.parents > 0 && stats.children > 0, `parents ${stats.parents}, tiles ${stats.children}`);
    // NMS and NMM did something: fewer parents than small objects.
    assert.ok(stats.parents < objects.filter((x) => fitsIn(x, p.cropThreshold)).length);
    for (const block of [chunk, vadd(chunk, [1, 3, 2]), vmul(chunk, [1, 2, 1]), [shape[0], chunk[1], shape[2]] as Vec3]) {
      assert.deepEqual(allBoxes(runBoxes(objects, shape, block, p, o)), ref, `seed ${seed}, blocks of ${block}`);
    }
  }
});

test('the result does not depend on the order of the input fragments', () => {
  for (const mode of ['auto', 'children', 'parents'] as const) {
    const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode };
    const chunk = minimalChunk(p);
    const { shape, objects } = scenario(31, p, chunk);
    const o = mergeOptions(shape, p, { nmsThreshold: 0.5 });
    const ref = runBoxes(objects, shape, chunk, p, o);
    for (let seed = 1; seed <= 3; seed++) assert.deepEqual(runBoxes(objects, shape, chunk, p, o, 1000 + seed), ref, `${mode}, shuffle ${seed}`);
  }
});

test('regions join by exact cell adjacency: bounding boxes that touch across a block border do not join, cells that touch do', () => {
  // Two L-shaped regions in neighbouring blocks whose bounding boxes overlap but whose cells stay
  // two voxels apart, and a third pair whose cells touch diagonally across the border.
  const shape: Vec3 = [4, 20, 40];
  const block: Vec3 = [4, 20, 20];
  const L1 = [box([1, 2, 12], [2, 3, 20]), box([1, 2, 12], [2, 10, 13])]; // ends at x = 19, y 2..9
  const L2 = [box([1, 4, 22], [2, 5, 30]), box([1, 4, 29], [2, 12, 30])]; // starts at x = 22: two apart
  const D1 = [box([1, 15, 19], [2, 16, 20])];
  const D2 = [box([2, 16, 20], [3, 17, 21])]; // diagonal neighbour across x = 20
  const heat = paintObjects([...L1, ...L2, ...D1, ...D2], shape);
  const p: BoxParams = { cropThreshold: [4, 20, 20], recrop: [4, 10, 10], mode: 'auto' };
  const found = extractAll(heat, shape, block, [1, 2, 2], fragmentOptions(shape, [1, 1, 1], [1, 1, 1], [0, 0, 0], latticeOf(p)));
  const out = allBoxes(mergeAll(found, shape, block, p, mergeOptions(shape, p, { nmmThreshold: 1 })));
  const parents = out.filter((x) => x.includes('|parent|')).map((x) => x.split('|')[0]);
  // L1 and L2 stay two regions (two parents); D1 and D2 are one region (one parent).
  assert.ok(parents.includes(bkey(box([1, 2, 12], [2, 10, 20]))), `L1 alone: ${parents}`);
  assert.ok(parents.includes(bkey(box([1, 4, 22], [2, 12, 30]))), `L2 alone: ${parents}`);
  assert.ok(parents.includes(bkey(box([1, 15, 19], [3, 17, 21]))), `D1 and D2 joined: ${parents}`);
  assert.equal(parents.length, 3);
});

test('Fast NMS: a region is dropped when a better region matches it, even one that is dropped itself', () => {
  // Three small regions in a row, scores 3 > 2 > 1 (by size): A matches B, B matches C, A does
  // not match C. Greedy NMS would keep A and C; Fast NMS keeps A alone.
  const shape: Vec3 = [1, 1, 60];
  const A = box([0, 0, 10], [1, 1, 13]), B = box([0, 0, 14], [1, 1, 16]), C = box([0, 0, 17], [1, 1, 18]);
  const p: BoxParams = { cropThreshold: [1, 1, 20], recrop: [1, 1, 10], mode: 'auto' };
  const found = extractAll(paintObjects([A, B, C], shape), shape, shape, [0, 0, 0], fragmentOptions(shape, [1, 1, 1], [1, 1, 1], [0, 0, 0], latticeOf(p)));
  const run = (nms: number) => allBoxes(mergeAll(found, shape, shape, p, mergeOptions(shape, p, { nmsThreshold: nms, nmmThreshold: 1, minShape: [1, 1, 8] }))).map((x) => x.split('|')[0]);
  // Grown to 8 voxels (growTo): A → [8,16), B → [11,19), C → [14,22); IoU(A,B) = 5/11, IoU(B,C) = 5/11, IoU(A,C) = 2/14.
  assert.deepEqual(run(0.3), [bkey(growTo(A, [1, 1, 8], boxOfShape(shape)))]);
  assert.equal(run(1).length, 3, 'NMS off keeps all three');
});
test('ownedTiles: over every block, each lattice tile meeting a box comes out once (owned by the block holding its centre)', () => {
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
      for (const x of ownedTiles(tileIndicesMeeting(b, tile), tile, w, boxOfShape(shape))) {
        assert.ok(inside(w, centre(x)));
        seen.set(bkey(x), (seen.get(bkey(x)) ?? 0) + 1);
      }
    }
    const want = tilesMeeting(b, tile, shape).map(bkey).sort();
    assert.deepEqual([...seen.keys()].sort(), want, bkey(b));
    for (const [k, n] of seen) assert.equal(n, 1, k);
  }
});

test('extractFragments: the blocks\' fragments partition the foreground cells, each in its block\'s own cells, named by its first cell', () => {
  const cases: Array<{ low: Vec3; block: Vec3; pd: Vec3; factor: Vec3; margin: Vec3 }> = [
    { low: [20, 26, 30], block: [7, 9, 10], pd: [1, 1, 1], factor: [1, 1, 1], margin: [0, 0, 0] },
    { low: [20, 26, 30], block: [7, 9, 10], pd: [2, 3, 3], factor: [2, 1, 1], margin: [1, 0, 2] },
    { low: [17, 29, 23], block: [6, 8, 7], pd: [1, 2, 3], factor: [1, 3, 2], margin: [0, 2, 1] },
  ];
  for (const [n, k] of cases.entries()) {
    const r = rng(60 + n);
    const ncell = [0, 1, 2].map((a) => Math.ceil(k.low[a] / k.pd[a])) as unknown as Vec3;
    // Random cell boxes (not touching): noise below the threshold, one hot voxel in each of their cells.
    const regions: Box[] = [];
    for (let t = 0; t < 80; t++) {
      const begin = [0, 1, 2].map((a) => randInt(r, 0, ncell[a]));
      const g = intersect(box(begin as unknown as Vec3, begin.map((v, a) => v + randInt(r, 1, 5)) as unknown as Vec3), boxOfShape(ncell));
      if (!isEmpty(g) && !regions.some((o) => touching(o, g))) regions.push(g);
    }
    const heat = new Float32Array(k.low[0] * k.low[1] * k.low[2]);
    for (let i = 0; i < heat.length; i++) heat[i] = r() * THRESHOLD * 0.9;
    for (const g of regions) {
      for (const c of indicesOf(g.begin, g.end)) {
        const v = [0, 1, 2].map((a) => randInt(r, c[a] * k.pd[a], Math.min(k.low[a], (c[a] + 1) * k.pd[a])));
        heat[(v[0] * k.low[1] + v[1]) * k.low[2] + v[2]] = THRESHOLD + 0.05 + 0.9 * r();
      }
    }
    const o = fragmentOptions(k.low, k.pd, k.factor, k.margin);
    const found = extractAll(heat, k.low, k.block, vadd(k.pd, [1, 1, 1]), o);
    const all: Fragment[] = [];
    for (const [bk, f] of found) {
      assert.equal(f.border.length, 18);
      for (let j = 1; j < f.fragments.length; j++) assert.ok(f.fragments[j - 1].id < f.fragments[j].id, 'sorted by id');
      for (const x of f.fragments) {
        assert.equal(key(x.block), bk);
        // Cells lie in the block's own cells: every cell's first voxel is in its low box.
        const w = writeBox(x.block, k.block, k.low);
        for (let a = 0; a < 3; a++) assert.ok(x.cells.begin[a] * k.pd[a] >= w.begin[a] && (x.cells.end[a] - 1) * k.pd[a] < w.end[a], `cells ${bkey(x.cells)} outside block ${bk}`);
        all.push(x);
      }
    }
    assert.ok(all.length > regions.length, 'some regions were cut by block borders');
    const fg = new Set<string>();
    for (const g of regions) for (const c of indicesOf(g.begin, g.end)) fg.add(key(c));
    for (const c of indicesOf([0, 0, 0], ncell)) {
      const holders = all.filter((f) => inside(f.cells, c));
      assert.equal(holders.length, fg.has(key(c)) ? 1 : 0, `cell ${c} in ${holders.length} fragments`);
    }
    for (const f of all) {
      // A fragment is a region's cells in one block: its cell box holds only foreground cells, and
      // its id is 1 + the raster index of its first cell in the cell grid.
      for (const c of indicesOf(f.cells.begin, f.cells.end)) assert.ok(fg.has(key(c)), `fragment ${bkey(f.cells)} holds background cell ${c}`);
      const first = f.cells.begin;
      assert.equal(f.id, (first[0] * ncell[1] + first[1]) * ncell[2] + first[2] + 1);
      let mass = 0;
      const vlo = vmul(f.cells.begin, k.pd);
      const vhi = [0, 1, 2].map((a) => Math.min(k.low[a], f.cells.end[a] * k.pd[a])) as unknown as Vec3;
      for (const v of indicesOf(vlo, vhi)) mass += heat[(v[0] * k.low[1] + v[1]) * k.low[2] + v[2]];
      const vv = k.factor[0] * k.factor[1] * k.factor[2];
      assert.ok(Math.abs(f.score - mass * vv) <= 1e-6 * Math.max(1, mass * vv), `score ${f.score} vs ${mass * vv}`);
      const full = vmul(k.low, k.factor);
      const want = intersect(box(
        [0, 1, 2].map((a) => vlo[a] * k.factor[a] - k.margin[a]) as unknown as Vec3,
        [0, 1, 2].map((a) => vhi[a] * k.factor[a] + k.margin[a]) as unknown as Vec3,
      ), boxOfShape(full));
      assert.deepEqual(f.box, want, `box of cells ${bkey(f.cells)}`);
      assert.deepEqual(f.tiles, tileIndices(f.box, RECROP, full), `tiles of cells ${bkey(f.cells)}`);
    }
  }
});

test('the tiles of an L-shaped object do not depend on the blocking: only tiles its cells (grown by the margin) meet, none for the empty corner', () => {
  const p: BoxParams = { cropThreshold: CT, recrop: RECROP, mode: 'children' };
  const small = minimalChunk(p);
  const low: Vec3 = vadd(vmul(small, [2, 3, 3]), [1, 2, 3]);
  const margin: Vec3 = [0, 1, 1];
  // Two arms from one corner, each spanning several tiles and blocks; the region between them is empty.
  const z0 = 2, y0 = 3, x0 = 4;
  const arms = [box([z0, y0, x0], [z0 + 2, y0 + 6 * RECROP[1], x0 + 2]), box([z0, y0, x0], [z0 + 2, y0 + 2, x0 + 6 * RECROP[2]])];
  const heat = paintObjects(arms, low);
  const o = fragmentOptions(low, [1, 1, 1], [1, 1, 1], margin, RECROP);
  const want = new Set<string>();
  for (const g of arms) {
    for (const t of tilesMeeting(intersect(box(vadd(g.begin, vmul(margin, [-1, -1, -1])), vadd(g.end, margin)), boxOfShape(low)), RECROP, low)) want.add(bkey(t));
  }
  const tilesWith = (block: Vec3) => {
    const out = [...mergeAll(extractAll(heat, low, block, [2, 2, 2], o), low, block, p, mergeOptions(low, p)).values()].flat();
    assert.ok(out.every((b) => b.role === 'child'));
    return out.map((b) => bkey(b.box)).sort();
  };
  const whole = tilesWith(low);
  assert.deepEqual(whole, [...want].sort(), 'one block: the tiles the cells need');
  for (const block of [small, vadd(small, [1, 3, 2])]) assert.deepEqual(tilesWith(block), whole, `blocks of ${block}`);
  const corner = tilesMeeting(box([z0, y0 + 6 * RECROP[1] - 1, x0 + 6 * RECROP[2] - 1], [z0 + 1, y0 + 6 * RECROP[1], x0 + 6 * RECROP[2]]), RECROP, low);
  assert.ok(!whole.includes(bkey(corner[0])));
});
