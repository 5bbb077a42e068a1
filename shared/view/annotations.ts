// The run's boxes as a neuroglancer precomputed annotation layer (AXIS_ALIGNED_BOUNDING_BOX,
// https://github.com/google/neuroglancer/blob/master/src/datasource/precomputed/annotations.md),
// written under OUTPUT/annotations/boxes from boxes/*.jsonl. Two spatial levels: level 0 is one
// cell holding an evenly spread subsample of at most `limit` boxes (what a zoomed-out view
// shows), level 1 is the stage-two block grid holding the rest, each box in every cell it meets.
// Cell by cell, reading only a block's and its neighbours' files: memory stays flat whatever the
// number of boxes. Annotation ids are global: block (raster index) × 2²⁴ + the box's id in its block.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, box, boxOfShape, intersect, isEmpty } from '../geometry/box.ts';
import { chunkBox, forEachIndex, inRange, indexId, indexOf, intersectRange, linearOf, range3, rangeSize } from '../geometry/grid.ts';
import { ConfigError, OutputError } from '../errors.ts';
import { Lru } from '../cache.ts';
import { writeFileAtomic, writeJsonAtomic } from '../volume/store.ts';
import { boxesFile, boxesFileBlock, readBoxLines } from '../tasks/boxes-output.ts';

export interface AnnotationBox {
  id: bigint;
  box: Box;
  score: number;
  /** 0 parent (a whole box), 1 child (a lattice tile of a box too large for one canvas). */
  role: number;
}

/** Bytes of one encoded box: two float32 corners, score float32, role uint8, padding to 4. */
const RECORD = 6 * 4 + 4 + 4;
const ID_SHIFT = 2 ** 24;

/** The multiple-annotation encoding: count (uint64le), the records, then the ids (uint64le). */
export function encodeAnnotations(items: readonly AnnotationBox[]): Uint8Array {
  const buf = new ArrayBuffer(8 + items.length * (RECORD + 8));
  const v = new DataView(buf);
  v.setBigUint64(0, BigInt(items.length), true);
  items.forEach((a, i) => writeRecord(v, 8 + i * RECORD, a));
  items.forEach((a, i) => v.setBigUint64(8 + items.length * RECORD + i * 8, a.id, true));
  return new Uint8Array(buf);
}

/** The single-annotation encoding (the by-id index): the record alone. */
export function encodeAnnotation(a: AnnotationBox): Uint8Array {
  const buf = new ArrayBuffer(RECORD);
  writeRecord(new DataView(buf), 0, a);
  return new Uint8Array(buf);
}

function writeRecord(v: DataView, at: number, a: AnnotationBox): void {
  [...a.box.begin, ...a.box.end].forEach((c, k) => v.setFloat32(at + 4 * k, c, true));
  v.setFloat32(at + 24, a.score, true);
  v.setUint8(at + 28, a.role);
}

/** Inverse of encodeAnnotations (tests, and anyone checking a layer). */
export function decodeAnnotations(bytes: Uint8Array): AnnotationBox[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(v.getBigUint64(0, true));
  if (bytes.byteLength !== 8 + n * (RECORD + 8)) throw new Error(`annotation list of ${n} needs ${8 + n * (RECORD + 8)} bytes, has ${bytes.byteLength}`);
  return Array.from({ length: n }, (_, i) => {
    const at = 8 + i * RECORD;
    const c = Array.from({ length: 6 }, (_, k) => v.getFloat32(at + 4 * k, true));
    return {
      id: v.getBigUint64(8 + n * RECORD + i * 8, true),
      box: box([c[0], c[1], c[2]], [c[3], c[4], c[5]]),
      score: v.getFloat32(at + 24, true),
      role: v.getUint8(at + 28),
    };
  });
}

/** A fixed pseudo-random number in [0, 1) per id (level 0's subsample; the spec asks for a spread, not the first ones). */
function spread(id: bigint): number {
  let h = Number(id % 4294967291n) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 2 ** 32;
}

/** The order the spec asks for within a cell: pseudo-random, fixed by the ids. */
const bySpread = (p: AnnotationBox, q: AnnotationBox) => spread(p.id) - spread(q.id) || (p.id < q.id ? -1 : 1);

export interface AnnotationLayerOptions {
  /** Volume shape (voxels). */
  shape: Vec3;
  /** Voxel size in nanometres or millimetres, as `unit` says. */
  spacing: Vec3;
  unit: string;
  /** The stage-two block (voxels): level 1's cell. */
  block: Vec3;
  /** Boxes in level 0's one cell. @default 5000 */
  limit?: number;
  /** The by-id index is one file per box; above this many boxes it is not written (hover then shows no details). @default 200000 */
  maxById?: number;
}

const METRES: Record<string, number> = { nanometer: 1e-9, micrometer: 1e-6, millimeter: 1e-3, meter: 1 };

/** Neuroglancer's coordinate spaces are in metres: the factor for an NGFF unit. */
export function metresPerUnit(unit: string): number {
  const m = METRES[unit];
  if (!m) throw new ConfigError('unit', `unit ${JSON.stringify(unit)} has no metre equivalent for neuroglancer (known: ${Object.keys(METRES).join(', ')})`);
  return m;
}

/** Write OUTPUT/annotations/boxes; returns the number of boxes. The info file is written last, so a layer without it is incomplete. */
export async function writeBoxAnnotations(out: string, o: AnnotationLayerOptions): Promise<number> {
  const dir = path.join(out, 'annotations', 'boxes');
  const boxesDir = path.join(out, 'boxes');
  if (!fs.existsSync(boxesDir)) throw new OutputError(boxesDir, 'no boxes/ in this output (a one-stage run has no boxes)');
  const scale = metresPerUnit(o.unit);
  const limit = o.limit ?? 5000;
  const grid = [0, 1, 2].map((a) => Math.ceil(o.shape[a] / o.block[a])) as unknown as Vec3;
  const all = range3([0, 0, 0], grid);
  const cache = new Lru<AnnotationBox[]>(64);
  const read = (b: Vec3) => cache.get(indexId(b), async () => (await readBoxLines(out, b)).map((x) => {
    if (x.id >= ID_SHIFT) throw new OutputError(boxesFile(out, b), `box id ${x.id} ≥ 2^24: annotation ids would collide`);
    return { id: BigInt(linearOf(all, b)) * BigInt(ID_SHIFT) + BigInt(x.id), box: x.box, score: x.score, role: x.role === 'child' ? 1 : 0 };
  }));

  // Pass 1: how many boxes (level 0 keeps limit / total of them) and which blocks have a file
  // (a byte per block: about 2 MB for FAFB's blocks), one block file at a time.
  const has = new Uint8Array(rangeSize(all));
  let total = 0;
  for await (const d of await fs.promises.opendir(boxesDir)) {
    if (!d.name.endsWith('.jsonl')) continue; // a temporary file of an interrupted write
    const b = boxesFileBlock(d.name);
    if (!b) throw new OutputError(path.join(boxesDir, d.name), 'not a boxes file (expected <z>_<y>_<x>.jsonl)');
    if (!inRange(all, b)) throw new OutputError(path.join(boxesDir, d.name), `block ${indexId(b)} lies outside the ${grid.join('×')} block grid of this run`);
    has[linearOf(all, b)] = 1;
    total += (await read(b)).length;
  }
  const blocks = function* (): Generator<Vec3> {
    for (let i = 0; i < has.length; i++) if (has[i]) yield indexOf(all, i);
  };
  const neighbours = (c: Vec3): Vec3[] => {
    const n: Vec3[] = [];
    forEachIndex(intersectRange(range3([c[0] - 1, c[1] - 1, c[2] - 1], [c[0] + 2, c[1] + 2, c[2] + 2]), all), (q) => n.push(q));
    return n;
  };
  const keep = total ? Math.min(1, limit / total) : 1;
  const atLevel0 = (a: AnnotationBox) => spread(a.id) < keep;

  fs.rmSync(dir, { recursive: true, force: true });
  // Level 1: every block cell that a box can meet (its own block or a neighbour's; boxes are
  // smaller than a block), holding the boxes not shown at level 0.
  const level0: AnnotationBox[] = [];
  const byId = total <= (o.maxById ?? 200_000);
  let most = 0;
  for (const b of blocks()) {
    for (const a of await read(b)) {
      if (atLevel0(a)) level0.push(a);
      if (byId) await writeFileAtomic(path.join(dir, 'by_id', a.id.toString()), encodeAnnotation(a));
    }
  }
  for (const b of blocks()) {
    for (const c of neighbours(b)) {
      // Each cell is written once: from the first of its neighbour blocks (raster order) that has boxes.
      const first = neighbours(c).find((q) => has[linearOf(all, q)]);
      if (!first || indexId(first) !== indexId(b)) continue;
      const region = chunkBox(c, o.block, boxOfShape(o.shape));
      const inCell: AnnotationBox[] = [];
      for (const q of neighbours(c)) {
        if (!has[linearOf(all, q)]) continue;
        for (const a of await read(q)) if (!atLevel0(a) && !isEmpty(intersect(a.box, region))) inCell.push(a);
      }
      if (!inCell.length) continue;
      most = Math.max(most, inCell.length);
      await writeFileAtomic(path.join(dir, 'spatial1', indexId(c)), encodeAnnotations(inCell.sort(bySpread)));
    }
  }
  await writeFileAtomic(path.join(dir, 'spatial0', '0_0_0'), encodeAnnotations(level0.sort(bySpread)));
  const dims = ['z', 'y', 'x'];
  // Each level's grid must tile [lower, upper) exactly: the bound is the block grid's extent.
  const upper = grid.map((g, a) => g * o.block[a]);
  // How many boxes the layer holds, for `tessera view` on an output whose layer is current.
  await writeJsonAtomic(path.join(dir, 'count.json'), { boxes: total });
  await writeJsonAtomic(path.join(dir, 'info'), {
    '@type': 'neuroglancer_annotations_v1',
    dimensions: Object.fromEntries(dims.map((d, a) => [d, [o.spacing[a] * scale, 'm']])),
    lower_bound: [0, 0, 0],
    upper_bound: upper,
    annotation_type: 'AXIS_ALIGNED_BOUNDING_BOX',
    properties: [
      { id: 'score', type: 'float32', description: 'stage-one score of the box' },
      { id: 'role', type: 'uint8', enum_values: [0, 1], enum_labels: ['box', 'tile'] },
    ],
    relationships: [],
    by_id: { key: 'by_id' },
    spatial: [
      { key: 'spatial0', grid_shape: [1, 1, 1], chunk_size: upper, limit: Math.max(1, level0.length) },
      // Level 1 only when level 0 could not hold every box (no empty level for a viewer to fetch).
      ...(most > 0 ? [{ key: 'spatial1', grid_shape: grid, chunk_size: o.block, limit: most }] : []),
    ],
  });
  return total;
}
