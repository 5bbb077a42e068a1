import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type Box, type Vec3, box, boxAt, boxOfShape, contains, equals, grow, intersect, isEmpty, shapeOf, translate, volumeOf,
} from '../../shared/geometry/box.ts';
import { type Array3, array3, copyRegion, crop } from '../../shared/array/array3.ts';
import { type Candidate, tileStarts } from '../../shared/pipeline/boxes.ts';

/** Test data: children of exactly `crop` covering `parent` (tileStarts per axis), ids firstId.., as a re-cropped parent's. */
function recrop(parent: Candidate, cropShape: Vec3, bounds: Box, firstId: number): Candidate[] {
  const axes = [0, 1, 2].map((a) => {
    const lo = parent.box.begin[a], hi = parent.box.end[a], c = cropShape[a];
    if (hi - lo <= c) {
      const s = Math.max(bounds.begin[a], Math.min(lo - Math.floor((c - (hi - lo)) / 2), bounds.end[a] - c));
      return [s];
    }
    return tileStarts(lo, hi, c);
  });
  const out: Candidate[] = [];
  for (const z of axes[0]) for (const y of axes[1]) for (const x of axes[2]) {
    out.push({ id: firstId + out.length, box: box([z, y, x], [z + cropShape[0], y + cropShape[1], x + cropShape[2]]), score: parent.score, role: 'child', parent: parent.id });
  }
  return out;
}
import {
  type PackHeuristic, type PackOptions, type Packing, type Postprocess, assembleCanvas, growContext, pack, unpackCanvas,
} from '../../shared/pipeline/pack.ts';
import { contextFill } from '../../shared/pipeline/pack-fill.ts';
import { occupied } from '../../shared/pipeline/stage2.ts';
import { ranVoxels, scaleTries } from '../../shared/pipeline/pack-scale.ts';

function rng(seed: number) {
  return () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0), seed / 2 ** 32);
}
const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

const BOUNDS = box([0, 0, 0], [40, 160, 160]);
const cand = (id: number, b: Box, extra: Partial<Candidate> = {}): Candidate => ({ id, box: b, score: 1, role: 'parent', ...extra });

/** Random boxes inside BOUNDS (some small, some bigger than slot or canvas) plus children of random parents. */
function randomBoxes(seed: number): Candidate[] {
  const r = rng(seed);
  const out: Candidate[] = [];
  const n = int(r, 1, 9);
  for (let i = 0; i < n; i++) {
    const s: Vec3 = [int(r, 1, 14), int(r, 1, 56), int(r, 1, 56)];
    const lo: Vec3 = [int(r, 0, 40 - s[0]), int(r, 0, 160 - s[1]), int(r, 0, 160 - s[2])];
    out.push(cand(out.length, boxAt(lo, s)));
  }
  const parents = int(r, 0, 2);
  for (let p = 0; p < parents; p++) {
    const s: Vec3 = [int(r, 4, 16), int(r, 16, 60), int(r, 16, 60)];
    const lo: Vec3 = [int(r, 0, 40 - s[0]), int(r, 0, 160 - s[1]), int(r, 0, 160 - s[2])];
    const kids = recrop(cand(100 + p, boxAt(lo, s)), [4, 16, 16], BOUNDS, out.length);
    // Sometimes drop a child (as ownership filtering would): the lattice becomes incomplete.
    if (kids.length > 2 && r() < 0.4) kids.splice(int(r, 0, kids.length - 1), 1);
    out.push(...kids.map((k, i) => ({ ...k, id: out.length + i })));
  }
  // Shuffle so children are interleaved with other boxes.
  for (let i = out.length - 1; i > 0; i--) {
    const j = int(r, 0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function checkInvariants(boxes: readonly Candidate[], o: PackOptions, p: Packing, label: string): void {
  const canvas = boxOfShape(o.canvas);
  assert.deepEqual(p.canvasShape, o.canvas, label);
  if (boxes.length > 0) assert.ok(p.fillRatio > 0 && p.fillRatio <= 1, `${label}: fillRatio ${p.fillRatio}`);
  const used = new Set<number>();
  const perCanvas = new Map<number, Box[]>();
  for (const pl of p.placements) {
    assert.ok(pl.canvas >= 0 && pl.canvas < p.canvases, label);
    used.add(pl.canvas);
    assert.ok(!isEmpty(pl.dest) && contains(canvas, pl.dest), `${label}: dest outside canvas`);
    assert.ok(contains(pl.source, pl.target), `${label}: target ⊄ source`);
    if (!pl.resized) assert.deepEqual(shapeOf(pl.dest), shapeOf(pl.source), label);
    else assert.notDeepEqual(shapeOf(pl.dest), shapeOf(pl.source), label);
    for (const q of perCanvas.get(pl.canvas) ?? []) assert.ok(isEmpty(intersect(q, pl.dest)), `${label}: dests overlap`);
    perCanvas.set(pl.canvas, [...(perCanvas.get(pl.canvas) ?? []), pl.dest]);
  }
  assert.equal(used.size, p.canvases, `${label}: empty canvas`);
  if (o.maxPerCanvas !== undefined && o.heuristic === 'scale') {
    for (const ds of perCanvas.values()) assert.ok(ds.length <= o.maxPerCanvas, label);
  }
  // Coverage: every voxel of every input box lies in some target.
  for (const b of boxes) {
    const s = shapeOf(b.box);
    const hit = new Uint8Array(volumeOf(b.box));
    for (const pl of p.placements) {
      const i = intersect(pl.target, b.box);
      if (isEmpty(i)) continue;
      for (let z = i.begin[0]; z < i.end[0]; z++) {
        for (let y = i.begin[1]; y < i.end[1]; y++) {
          const row = ((z - b.box.begin[0]) * s[1] + y - b.box.begin[1]) * s[2] - b.box.begin[2];
          hit.fill(1, row + i.begin[2], row + i.end[2]);
        }
      }
    }
    assert.ok(hit.every((v) => v === 1), `${label}: box ${b.id} not covered`);
  }
  let filled = 0;
  for (const pl of p.placements) filled += volumeOf(pl.dest);
  assert.equal(p.fillRatio, filled / (p.canvases * o.canvas[0] * o.canvas[1] * o.canvas[2]), label);
}

const HEURISTICS: PackHeuristic[] = ['grid', 'scale', 'jigsaw'];
const POSTPROCESS: Postprocess[] = ['resize', 'crop_and_resize'];

function options(h: PackHeuristic, pp: Postprocess, extra: Partial<PackOptions> = {}): PackOptions {
  return { canvas: [8, 32, 32], slot: [4, 16, 16], heuristic: h, postprocess: pp, cropThreshold: [4, 16, 16], bounds: BOUNDS, ...extra };
}

test('pack invariants on random inputs: every heuristic × postprocess × canvas options', () => {
  const variants: Array<Partial<PackOptions>> = [
    {},
    { cropThreshold: [6, 20, 20] },
    { maxPerCanvas: 1 },
    { maxPerCanvas: 3 },
    { canvas: [9, 40, 33], bounds: undefined },
    { gap: [1, 4, 4] },
  ];
  for (let seed = 1; seed <= 16; seed++) {
    const boxes = randomBoxes(seed);
    for (const h of HEURISTICS) {
      for (const pp of POSTPROCESS) {
        for (const v of variants) {
          const o = options(h, pp, v);
          const label = `seed ${seed} ${h} ${pp} ${JSON.stringify(v)}`;
          const p = pack(boxes, o);
          checkInvariants(boxes, o, p, label);
          assert.deepEqual(pack(structuredClone(boxes), o), p, `${label}: not deterministic`);
        }
      }
    }
  }
});

test('pack: empty input, empty boxes ignored, bad options rejected', () => {
  const p = pack([cand(0, box([1, 1, 1], [1, 5, 5]))], options('grid', 'resize'));
  assert.deepEqual([p.canvases, p.placements.length, p.fillRatio], [0, 0, 0]);
  assert.throws(() => pack([], options('grid', 'resize', { slot: [9, 16, 16] })), RangeError);
  assert.throws(() => pack([], options('grid', 'resize', { canvas: [8, 0, 32] })), RangeError);
  assert.throws(() => pack([], options('grid', 'resize', { maxPerCanvas: 0 })), RangeError);
});

test('grid: slot-sized boxes fill slots in order, unresized; small boxes get real context', () => {
  const boxes = Array.from({ length: 9 }, (_, i) => cand(i, boxAt([0, 16 * i, 0], [4, 16, 16])));
  const p = pack(boxes, options('grid', 'crop_and_resize'));
  assert.equal(p.canvases, 2);
  assert.deepEqual(p.placements.filter((x) => x.canvas === 0).map((x) => x.boxId), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.ok(p.placements.every((x) => !x.resized && equals(x.source, x.target)));
  assert.equal(p.fillRatio, 9 / 16);
  const small = pack([cand(0, box([0, 10, 150], [2, 14, 160]))], options('grid', 'resize'));
  const [pl] = small.placements;
  assert.deepEqual(pl.source, box([0, 4, 144], [4, 20, 160])); // grown to the slot, shifted into bounds
  assert.deepEqual(pl.target, box([0, 10, 150], [2, 14, 160]));
  assert.deepEqual(pl.dest, box([0, 0, 0], [4, 16, 16]));
  assert.equal(small.fillRatio, 1 / 8);
});

test('grid: resize shrinks a big box into one slot; crop_and_resize cuts it (and resizes only above the slot)', () => {
  const big = [cand(0, box([0, 0, 0], [4, 40, 16]))];
  const r = pack(big, options('grid', 'resize'));
  assert.equal(r.placements.length, 1);
  assert.ok(r.placements[0].resized);
  assert.deepEqual(shapeOf(r.placements[0].dest), [4, 16, 16]);
  const c = pack(big, options('grid', 'crop_and_resize'));
  assert.deepEqual(c.placements.map((x) => [x.source.begin[1], x.source.end[1], x.target.begin[1], x.target.end[1], x.resized]), [
    [0, 16, 0, 14, false], [12, 28, 14, 26, false], [24, 40, 26, 40, false],
  ]);
  const t = pack(big, options('grid', 'crop_and_resize', { cropThreshold: [4, 20, 20] }));
  assert.deepEqual(t.placements.map((x) => [x.source.begin[1], x.source.end[1], x.resized]), [[0, 20, true], [20, 40, true]]);
});

test('scale: native size, extreme-point packing; oversize boxes resized or cut to the canvas', () => {
  const boxes = [cand(0, boxAt([0, 0, 0], [8, 32, 16])), cand(1, boxAt([10, 0, 0], [8, 16, 16])), cand(2, boxAt([20, 0, 0], [4, 16, 16]))];
  const p = pack(boxes, options('scale', 'resize'));
  assert.equal(p.canvases, 1);
  assert.deepEqual(p.placements.map((x) => [x.boxId, x.canvas, x.dest.begin.join()]), [[0, 0, '0,0,0'], [1, 0, '0,0,16'], [2, 0, '0,16,16']]);
  assert.equal(p.fillRatio, (4096 + 2048 + 1024) / 8192);
  assert.ok(p.placements.every((x) => !x.resized && equals(x.source, x.target)));
  const huge = [cand(0, boxAt([0, 0, 0], [12, 80, 20]))];
  const r = pack(huge, options('scale', 'resize'));
  assert.deepEqual(shapeOf(r.placements[0].dest), [8, 32, 20]);
  assert.ok(r.placements[0].resized);
  const c = pack(huge, options('scale', 'crop_and_resize'));
  assert.equal(c.placements.length, 2 * 3);
  assert.ok(c.placements.every((x) => !x.resized));
});

test('scale with a gap: any two crops of a canvas are at least the gap apart along some axis; no gap packs tighter', () => {
  const gap: Vec3 = [1, 4, 4];
  let apart = 0, tight = 0;
  for (let seed = 1; seed <= 16; seed++) {
    const boxes = randomBoxes(seed);
    const p = pack(boxes, options('scale', 'crop_and_resize', { gap }));
    apart += p.canvases;
    tight += pack(boxes, options('scale', 'crop_and_resize')).canvases;
    for (const a of p.placements) {
      for (const b of p.placements) {
        if (a === b || a.canvas !== b.canvas) continue;
        const separated = [0, 1, 2].some((k) => a.dest.end[k] + gap[k] <= b.dest.begin[k] || b.dest.end[k] + gap[k] <= a.dest.begin[k]);
        assert.ok(separated, `seed ${seed}: ${JSON.stringify(a.dest)} and ${JSON.stringify(b.dest)} closer than ${gap}`);
      }
    }
  }
  assert.ok(apart > tight, `gap ${apart} canvases, none ${tight}`);
});

test('jigsaw: children of one parent keep their relative placement, canvas = a contiguous volume region', () => {
  // A parent cut into a 2×2×2 lattice of overlapping slot-sized tiles.
  const parent = cand(50, box([3, 10, 20], [10, 40, 48]));
  const kids = recrop(parent, [4, 16, 16], BOUNDS, 0);
  assert.equal(kids.length, 8);
  const r = rng(9);
  const shuffled = [...kids].sort(() => r() - 0.5);
  const o = options('jigsaw', 'crop_and_resize');
  const p = pack(shuffled, o);
  assert.equal(p.canvases, 1);
  assert.equal(p.placements.length, 8);
  const offsets = new Set(p.placements.map((x) => [0, 1, 2].map((a) => x.dest.begin[a] - x.source.begin[a]).join()));
  assert.equal(offsets.size, 1);
  assert.equal(p.fillRatio, 1);
  // The assembled canvas equals the volume region it shows.
  const vol = randomVolume(shapeOf(BOUNDS), 4);
  const canvas = assembleCanvas(p, 0, (s) => crop(vol, [0, 0, 0], s), -1);
  const [dz, dy, dx] = [...offsets][0].split(',').map(Number);
  const region = translate(boxOfShape(o.canvas), [-dz, -dy, -dx]);
  assert.deepEqual(canvas.data, crop(vol, [0, 0, 0], region).data);
  // Grid packs the same tiles one per slot with no shared offset.
  const g = pack(shuffled, options('grid', 'crop_and_resize'));
  assert.ok(new Set(g.placements.map((x) => [0, 1, 2].map((a) => x.dest.begin[a] - x.source.begin[a]).join())).size > 1);
});

test('jigsaw: a box bigger than a slot but within the canvas is placed whole and unresized', () => {
  const p = pack([cand(0, box([0, 0, 0], [6, 20, 30]))], options('jigsaw', 'resize'));
  assert.equal(p.placements.length, 1);
  const [pl] = p.placements;
  assert.ok(!pl.resized);
  assert.deepEqual(pl.dest, box([0, 0, 0], [8, 32, 32]));
  assert.deepEqual(pl.target, box([0, 0, 0], [6, 20, 30]));
  // With one slot per canvas it falls back to grid (resized into the slot).
  const one = pack([cand(0, box([0, 0, 0], [6, 20, 30]))], options('jigsaw', 'resize', { maxPerCanvas: 1 }));
  assert.ok(one.placements[0].resized);
});

function randomVolume(shape: Vec3, seed: number): Array3<Float32Array> {
  const r = rng(seed);
  const v = array3(new Float32Array(shape[0] * shape[1] * shape[2]), shape);
  for (let i = 0; i < v.data.length; i++) v.data[i] = r();
  return v;
}

test('assemble → identity prediction → unpack returns the volume exactly on unresized targets', () => {
  const vol = randomVolume(shapeOf(BOUNDS), 7);
  const read = (s: Box) => crop(vol, [0, 0, 0], s);
  for (let seed = 1; seed <= 8; seed++) {
    const boxes = randomBoxes(100 + seed);
    for (const h of HEURISTICS) {
      for (const pp of POSTPROCESS) {
        const p = pack(boxes, options(h, pp));
        let exact = 0;
        for (let c = 0; c < p.canvases; c++) {
          const canvas = assembleCanvas(p, c, read, 0);
          for (const u of unpackCanvas(p, c, canvas)) {
            assert.deepEqual(u.values.shape, shapeOf(u.target));
            if (u.placement.resized) continue;
            assert.deepEqual(u.values.data, read(u.target).data, `seed ${seed} ${h} ${pp}`);
            exact++;
          }
        }
        assert.ok(exact > 0 || p.placements.every((x) => x.resized));
      }
    }
  }
});

test('unpack inverts a resize approximately (smooth content)', () => {
  const shape: Vec3 = [8, 64, 64];
  const vol = array3(new Float32Array(8 * 64 * 64), shape);
  for (let z = 0; z < 8; z++) for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) vol.data[(z * 64 + y) * 64 + x] = z + 0.1 * y + 0.05 * x;
  const p = pack([cand(0, box([0, 8, 8], [4, 40, 40]))], options('grid', 'resize', { bounds: boxOfShape(shape) }));
  assert.ok(p.placements[0].resized);
  const canvas = assembleCanvas(p, 0, (s) => crop(vol, [0, 0, 0], s), 0);
  const [u] = unpackCanvas(p, 0, canvas);
  const want = crop(vol, [0, 0, 0], u.target);
  let err = 0;
  for (let i = 0; i < want.data.length; i++) err = Math.max(err, Math.abs(want.data[i] - u.values.data[i]));
  assert.ok(err < 0.2, `max error ${err}`);
});

test('context fill: every canvas voxel shows the volume where its nearest crop would put it; dests are unchanged', () => {
  const vol = randomVolume(shapeOf(BOUNDS), 11);
  // Reads reach outside the volume (a crop near a border owns voxels past it): pad with -1.
  const read = (s: Box) => {
    const out = array3(new Float32Array(volumeOf(s)).fill(-1), shapeOf(s));
    copyRegion(vol, [0, 0, 0], out, s.begin, s);
    return out;
  };
  let checked = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const p = pack(randomBoxes(300 + seed), options('scale', 'crop_and_resize'));
    for (let c = 0; c < p.canvases; c++) {
      const ps = p.placements.filter((x) => x.canvas === c);
      const ext = occupied(p, [c], [4, 16, 16]);
      const fill = contextFill(ps, ext);
      const canvas = assembleCanvas(p, c, read, 0, fill);
      const plain = assembleCanvas(p, c, read, 0);
      const [D, H, W] = ext;
      const [, CH, CW] = p.canvasShape;
      for (let z = 0, v = 0; z < D; z++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++, v++) {
        const i = fill.owners[v];
        const d = ps.map((q) => Math.max(...[z, y, x].map((u, a) => Math.max(q.dest.begin[a] - u, u - q.dest.end[a] + 1, 0))));
        // The owner is the nearest placement, the first of equals.
        assert.equal(i, d.indexOf(Math.min(...d)), `seed ${seed} canvas ${c} voxel ${[z, y, x]}`);
        const at: Vec3 = [z, y, x].map((u, a) => u + ps[i].source.begin[a] - ps[i].dest.begin[a]) as unknown as Vec3;
        assert.ok(contains(fill.reads[i], box(at, [at[0] + 1, at[1] + 1, at[2] + 1])));
        assert.equal(canvas.data[(z * CH + y) * CW + x], read(box(at, [at[0] + 1, at[1] + 1, at[2] + 1])).data[0]);
        if (d[i] === 0) assert.equal(canvas.data[(z * CH + y) * CW + x], plain.data[(z * CH + y) * CW + x]);
        checked++;
      }
    }
  }
  assert.ok(checked > 100_000, `${checked} voxels checked`);
});

test('context fill: a resized placement keeps its dest and owns nothing around it', () => {
  const p = pack([cand(0, box([0, 0, 0], [4, 120, 40])), cand(1, box([10, 10, 10], [12, 20, 20]))], options('grid', 'resize'));
  const ps = p.placements.filter((x) => x.canvas === 0);
  const fill = contextFill(ps, p.canvasShape);
  ps.forEach((q, i) => {
    const owned = fill.owners.reduce((n, o) => n + (o === i ? 1 : 0), 0);
    if (q.resized) {
      assert.equal(owned, 0);
      assert.deepEqual(fill.reads[i], q.source);
    } else assert.ok(owned >= volumeOf(q.dest));
  });
  assert.ok(ps.some((q) => q.resized));
});

test('growContext: context never makes a box that fits the canvas too big for it', () => {
  const C: Vec3 = [16, 128, 128];
  const ctx: Vec3 = [1, 4, 4];
  assert.deepEqual(growContext(box([10, 10, 10], [14, 42, 42]), ctx, C), box([9, 6, 6], [15, 46, 46]));
  // 16 deep fits exactly: no context in z; 15 deep: one section, after it.
  assert.deepEqual(growContext(box([0, 0, 0], [16, 64, 64]), ctx, C), box([0, -4, -4], [16, 68, 68]));
  assert.deepEqual(growContext(box([0, 0, 0], [15, 122, 64]), ctx, C), box([0, -3, -4], [16, 125, 68]));
  // Longer than the canvas: it is split anyway, and its pieces get their full context.
  assert.deepEqual(growContext(box([0, 0, 0], [20, 64, 64]), ctx, C), box([-1, -4, -4], [21, 68, 68]));
  // A child of the re-crop lattice plus its context now packs as one piece, not two.
  const child = cand(0, growContext(box([0, 0, 0], [16, 64, 64]), ctx, C));
  assert.equal(pack([child], options('scale', 'crop_and_resize', { canvas: C, bounds: box([0, -8, -8], [32, 200, 200]) })).placements.length, 1);
  assert.equal(pack([cand(0, grow(box([0, 0, 0], [16, 64, 64]), ctx))], options('scale', 'crop_and_resize', { canvas: C, bounds: box([-1, -8, -8], [32, 200, 200]) })).placements.length, 2);
});

test('scale: of the packings tried, the one the network runs fewest voxels for is kept (not the fewest canvases)', () => {
  const o: PackOptions = { canvas: [16, 64, 64], slot: [4, 16, 16], heuristic: 'scale', postprocess: 'crop_and_resize', cropThreshold: [16, 64, 64], divisor: [2, 8, 8] };
  let differs = 0;
  for (let seed = 1; seed <= 60; seed++) {
    // Many small boxes: several canvases, so the tries differ in how full the last ones run.
    const r = rng(seed);
    const boxes = Array.from({ length: int(r, 8, 30) }, (_, i) => cand(i, boxAt([0, 0, 0], [int(r, 2, 16), int(r, 4, 40), int(r, 4, 40)])));
    const tries = [...scaleTries(boxes, o)];
    const ran = tries.map((t) => ranVoxels(t, o.canvas, o.divisor!));
    const kept = pack(boxes, o);
    assert.equal(ranVoxels(kept, o.canvas, o.divisor!), Math.min(...ran), `seed ${seed}`);
    // What the network runs, by the same rounding stage two uses.
    let byStage2 = 0;
    for (let c = 0; c < kept.canvases; c++) byStage2 += volumeOf(boxOfShape(occupied(kept, [c], o.divisor!)));
    assert.equal(byStage2, Math.min(...ran));
    const fewest = tries.reduce((a, t) => (t.canvases < a.canvases ? t : a));
    if (ranVoxels(fewest, o.canvas, o.divisor!) > Math.min(...ran)) differs++;
  }
  assert.ok(differs > 0, 'some inputs where the fewest canvases run more voxels');
});
