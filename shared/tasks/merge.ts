// Tasks `merge<l>` (up) and `resolve<l>` (down): the instance-id reduction of pipeline/merge.ts
// over the regions of geometry/tree.ts. Each task reads its children's (or its parent's) tables
// and writes its own; none holds more than what crosses its region's surface.
//
//   .work/merge<l>/<region>.bin     sections: 0 summary (read by merge<l+1>), 1 decisions (resolve<l>)
//   .work/resolve<l>/<region>.bin   one section per child, in child order (read by that child:
//                                   resolve<l−1> of the child region, or relabel of the chunk)
import type { Vec3 } from '../geometry/box.ts';
import { type Range3, chunkBox, indexId, inRange } from '../geometry/grid.ts';
import { carriedFaces, openFaces, regionChildren, regionChunks, regionParent, treeLevels } from '../geometry/tree.ts';
import { type Column, packColumns, unpackColumns } from '../array/columns.ts';
import { type Decisions, type Down, type Rows, type Summary, chunkSummary, joinRegion, settleRegion } from '../pipeline/merge.ts';
import type { TaskContext, TaskStats } from './context.ts';
import type { LabelResult } from './instances.ts';

/** The chunks whose objects get ids (the ROI's) and the reduction's fan-in. */
export function instanceRange(ctx: TaskContext): { run: Range3; fanIn: Vec3; levels: number } {
  const run = ctx.graph.kinds.find((k) => k.name === 'faces')!.range;
  const fanIn = ctx.config.io.mergeFanIn;
  return { run, fanIn, levels: treeLevels(run, fanIn) };
}

/** The range of a child of a level-l region (a level-(l−1) region; a chunk at level 1). */
function childChunks(child: Vec3, level: number, fanIn: Vec3, run: Range3): Range3 {
  return regionChunks(child, level - 1, fanIn, run);
}

/** The chunk holding the first voxel of the part with id `id` (1 + its raster index). */
function chunkOfId(id: number, volume: Vec3, chunk: Vec3): Vec3 {
  const i = id - 1;
  const YX = volume[1] * volume[2];
  const z = Math.floor(i / YX);
  const y = Math.floor((i - z * YX) / volume[2]);
  const x = i - z * YX - y * volume[2];
  return [Math.floor(z / chunk[0]), Math.floor(y / chunk[1]), Math.floor(x / chunk[2])];
}

async function leafSummary(ctx: TaskContext, c: Vec3, run: Range3): Promise<Summary> {
  const [table, [edges]] = await Promise.all([
    ctx.work.readJson<LabelResult>('label', c),
    ctx.work.readSections('faces', c, ['pairs']).then(([b]) => unpackColumns(b, `faces of chunk ${indexId(c)}`)),
  ]);
  if (!(edges instanceof Float64Array)) throw new RangeError(`faces of chunk ${indexId(c)}: not a table of contacts`);
  return chunkSummary(table.objects, chunkBox(c, ctx.graph.chunk, ctx.graph.volume), openFaces({ lo: c, hi: [c[0] + 1, c[1] + 1, c[2] + 1] }, run), edges);
}

export async function mergeTask(ctx: TaskContext, level: number, b: Vec3): Promise<TaskStats> {
  const { run, fanIn } = instanceRange(ctx);
  const region = regionChunks(b, level, fanIn, run);
  const kids = regionChildren(b, level, fanIn, run);
  const children = await Promise.all(kids.map(async (k) => {
    if (level === 1) return leafSummary(ctx, k, run);
    const [s] = await ctx.work.readSections(`merge${level - 1}`, k, ['summary']);
    return decodeSummary(s, `merge${level - 1} ${indexId(k)}`);
  }));
  const what = `merge${level} ${indexId(b)}`;
  const { summary, decisions } = await ctx.timings.time('merge', () => joinRegion(children, {
    carry: kids.map((k) => carriedFaces(childChunks(k, level, fanIn, run), region, run)),
    inside: (id) => inRange(region, chunkOfId(id, ctx.graph.volume.end, ctx.graph.chunk)),
    what,
  }));
  await ctx.work.writeSections(`merge${level}`, b, [
    { key: 'summary', header: null, body: [encodeSummary(summary)] },
    { key: 'decisions', header: null, body: [encodeDecisions(decisions)] },
  ]);
  return { objectsOpen: summary.open.key.length, objectsClosed: decisions.closed.key.length };
}

export async function resolveTask(ctx: TaskContext, level: number, b: Vec3): Promise<TaskStats> {
  const { run, fanIn, levels } = instanceRange(ctx);
  const [d] = await ctx.work.readSections(`merge${level}`, b, ['decisions']);
  const decisions = decodeDecisions(d, `merge${level} ${indexId(b)}`);
  let fromParent: Down | undefined;
  if (level < levels) {
    const p = regionParent(b, fanIn);
    const [s] = await ctx.work.readSections(`resolve${level + 1}`, p, [indexId(b)]);
    fromParent = decodeDown(s, `resolve${level + 1} ${indexId(p)}, region ${indexId(b)}`);
  }
  const downs = await ctx.timings.time('merge', () => settleRegion(decisions, fromParent, `resolve${level} ${indexId(b)}`));
  // One section per child, named by its index: the child reads its own.
  const kids = regionChildren(b, level, fanIn, run);
  await ctx.work.writeSections(`resolve${level}`, b, downs.map((d, i) => ({ key: indexId(kids[i]), header: null, body: [encodeDown(d)] })));
  return {};
}

// ---------------------------------------------------------------- tables as columns

function rowColumns(r: Rows): Column[] {
  return [r.key, r.cls, r.box, r.voxels, r.mass];
}

function rowsFrom(c: Column[], at: number, what: string): Rows {
  const [key, cls, box, voxels, mass] = c.slice(at, at + 5);
  const n = key?.length ?? -1;
  if (!(key instanceof Float64Array && cls instanceof Uint8Array && box instanceof Float64Array && voxels instanceof Float64Array && mass instanceof Float64Array)
    || cls.length !== n || box.length !== 6 * n || voxels.length !== n || mass.length !== n) {
    throw new RangeError(`${what}: not a table of object rows`);
  }
  return { key, cls, box, voxels, mass };
}

function f64(c: Column | undefined, what: string): Float64Array {
  if (!(c instanceof Float64Array)) throw new RangeError(`${what}: expected a column of ids`);
  return c;
}

export function encodeSummary(s: Summary): Uint8Array {
  return packColumns([...rowColumns(s.open), s.part, s.partKey, s.partMask, s.edgeA, s.edgeB]);
}

export function decodeSummary(b: Uint8Array, what: string): Summary {
  const c = unpackColumns(b, what);
  const partMask = c[7];
  if (c.length !== 10 || !(partMask instanceof Uint8Array)) throw new RangeError(`${what}: not a region summary`);
  return { open: rowsFrom(c, 0, what), part: f64(c[5], what), partKey: f64(c[6], what), partMask, edgeA: f64(c[8], what), edgeB: f64(c[9], what) };
}

export function encodeDecisions(d: Decisions): Uint8Array {
  return packColumns([d.childCounts, d.childKey, d.root, ...rowColumns(d.closed)]);
}

export function decodeDecisions(b: Uint8Array, what: string): Decisions {
  const c = unpackColumns(b, what);
  const counts = c[0];
  if (c.length !== 8 || !(counts instanceof Uint32Array)) throw new RangeError(`${what}: not a region's decisions`);
  return { childCounts: counts, childKey: f64(c[1], what), root: f64(c[2], what), closed: rowsFrom(c, 3, what) };
}

export function encodeDown(d: Down): Uint8Array {
  return packColumns([d.key, d.final, ...rowColumns(d.row)]);
}

export function decodeDown(b: Uint8Array, what: string): Down {
  const c = unpackColumns(b, what);
  if (c.length !== 7) throw new RangeError(`${what}: not a list of final ids`);
  return { key: f64(c[0], what), final: f64(c[1], what), row: rowsFrom(c, 2, what) };
}
