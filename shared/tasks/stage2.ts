// Task `stage2`: select and order the boxes the chunks of one block (`pack.block` or `pack.chunks`) own, pack them into canvases (with
// `pack.context` read around each box but never pasted back), run the full-resolution network
// on the canvases and persist each crop's prediction for its target only, quantised to 16 bits
// (|Δp| ≤ 7.7·10⁻⁶: far below anything that moves an arg-max; a quarter of float32 on disk
// after the canvases' unused space is dropped), cut by the chunks it pastes into (stage2-parts.ts). Canvases hold the boxes of one block only, so
// their reads stay local; boxes.jsonl under the output lists the block's boxes and placements.
import { type Box, type Vec3, boxOfShape, containsPoint, grow, intersect, volumeOf } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { normalize } from '../infer/model.ts';
import { anchorOf, policyByName } from '../pipeline/select.ts';
import { type Packing, growContext, pack, unpackCanvas } from '../pipeline/pack.ts';
import { channelOf, occupied, stage2 } from '../pipeline/stage2.ts';
import { contextFill } from '../pipeline/pack-fill.ts';
import pLimit from 'p-limit';
import { type CachedReader, cachedReader } from '../volume/source.ts';
import { readAhead } from '../cache.ts';
import { compareBoxes } from '../pipeline/boxes-order.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { readBoxes } from './boxes.ts';
import { ONE, stage2Chunks } from './graph.ts';
import { chunkBox, forEachIndex, relatedBlocks } from '../geometry/grid.ts';
import { type OwnedBox, byBox } from '../pipeline/boxes-merge.ts';
import { writeBoxesLines } from './boxes-output.ts';
import { type QuantisedCrop, writeStage2 } from './stage2-parts.ts';
import { quantise } from '../pipeline/quant.ts';
import { skipOf, skipped } from './mask.ts';

/**
 * The boxes whose anchor lies in stage-two block `b` (planned per stage-one block: those of the
 * stage-one blocks meeting it), in one order that does not depend on how the block is cut into
 * chunks (so two chunk sizes with the same block pack the same canvases).
 */
async function blockBoxes(ctx: TaskContext, b: Vec3): Promise<OwnedBox[]> {
  const bx = ctx.graph.kinds.find((k) => k.name === 'boxes')!;
  const p = stage2Chunks(ctx.config);
  const first = chunkBox([b[0] * p[0], b[1] * p[1], b[2] * p[2]], ctx.graph.chunk, ctx.graph.volume);
  const last = chunkBox([(b[0] + 1) * p[0] - 1, (b[1] + 1) * p[1] - 1, (b[2] + 1) * p[2] - 1], ctx.graph.chunk, ctx.graph.volume);
  const mine = { begin: first.begin, end: last.end };
  const planned: Vec3[] = [];
  forEachIndex(relatedBlocks(b, p, [0, 0, 0], bx.block, bx.range), (i) => planned.push(i));
  const all = (await Promise.all(planned.map((i) => readBoxes(ctx, i)))).flat().filter((x) => containsPoint(mine, anchorOf(x.box)));
  return all.sort(byBox).map((x, id) => ({ ...x, id }));
}

export async function stage2Task(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const card = ctx.cards.fullres;
  const why = await skipOf(ctx, 'stage2', index);
  if (why) return skipped('stage2', why);
  const owned = await blockBoxes(ctx, index);
  const chosen = policyByName(c.select.policy).select(owned, { maxBoxes: c.select.maxBoxes > 0 ? c.select.maxBoxes : undefined });
  const vol = boxOfShape(ctx.src.shape);
  const ctxm = c.pack.context;
  const withContext = ctxm.some((v) => v > 0);
  const fit = (b: Box) => (c.pack.contextFit === 'clip' ? growContext(b, ctxm, c.pack.canvas) : grow(b, ctxm));
  const packed = withContext ? chosen.map((b) => ({ ...b, box: intersect(fit(b.box), vol) })) : chosen;
  const packing: Packing = pack(packed, {
    canvas: c.pack.canvas, slot: c.pack.crop, heuristic: c.pack.heuristic, postprocess: c.pack.postprocess,
    cropThreshold: c.boxes.cropThreshold, maxPerCanvas: c.pack.maxPerCanvas > 0 ? c.pack.maxPerCanvas : undefined, gap: c.pack.gap,
    bounds: vol, divisor: card.divisor,
  });
  if (withContext) {
    const own = new Map(chosen.map((b) => [b.id, b.box]));
    packing.placements = packing.placements.map((p) => ({ ...p, target: intersect(p.target, own.get(p.boxId)!) }));
  }

  const fill = c.pack.fill === 'min' ? normalize([0], card.normalization)[0] : 0;
  // Each canvas runs at its occupied extent (batches, context fill and the ran-voxel count use it).
  const exts = Array.from({ length: packing.canvases }, (_, i) => occupied(packing, [i], card.divisor));
  const context = c.pack.fill === 'context';
  const reader = cachedReader(ctx.src, ctx.inputCache);
  // A context fill reads more than the crops' sources: what each canvas's crops own around them
  // (stage2() derives the same regions again when it assembles the canvas; it is cheap).
  const reads = context
    ? exts.flatMap((ext, ci) => contextFill(packing.placements.filter((p) => p.canvas === ci), ext).reads.map((b) => ({ canvas: ci, box: b })))
    : packing.placements.map((p) => ({ canvas: p.canvas, box: p.source }));
  const sources = await ctx.timings.time('read', () => readSources(reads, reader, ctx.src.full.array.chunks));
  const read = async (b: Box) => {
    const raw = sources.take(b);
    return array3(normalize(raw.data, card.normalization), raw.shape);
  };
  // Fixed batches of canvases, in order (batch composition never depends on timing), of
  // canvases with the same occupied extent: a batch runs at the extent of its largest member,
  // and a half-empty canvas padded to a full one's extent is mostly fill, which shifts the
  // instance normalisation of what it holds (false positives).
  const batch = Math.max(1, c.inference.batch);
  const groups: number[][] = [];
  let last = '';
  for (let i = 0; i < packing.canvases; i++) {
    const ext = exts[i].join(',');
    if (groups.length && ext === last && groups[groups.length - 1].length < batch) groups[groups.length - 1].push(i);
    else groups.push([i]);
    last = ext;
  }
  // Each group's predictions are cut to their crops and quantised as soon as they arrive, so a
  // block's float canvases are never all held at once.
  const limit = pLimit(ctx.pool.size + 1);
  let channels = 0;
  const done = await ctx.timings.time('canvases', () => Promise.all(groups.map((g) => limit(async () => {
    const out: QuantisedCrop[] = [];
    for (const p of await stage2(packing, g, read, ctx.fullres, { batch, mirror: c.stage2.mirror, fill, context, signal: ctx.signal })) {
      channels = p.channels;
      const perChannel = Array.from({ length: p.channels }, (_, ch) => unpackCanvas(packing, p.canvas, channelOf(p, ch, packing.canvasShape)));
      perChannel[0].forEach((u, k) => out.push({
        crop: { boxId: u.placement.boxId, source: u.placement.source, target: u.target },
        values: perChannel.map((pc) => quantise(pc[k].values.data)),
      }));
    }
    return out;
  }))));
  await writeStage2(ctx, index, channels, done.flat());
  await writeBoxesLines(ctx, index, chosen, packing);
  const canvasVoxels = volumeOf(boxOfShape(packing.canvasShape));
  return {
    boxes: chosen.length,
    canvases: packing.canvases,
    filled: Math.round(packing.fillRatio * packing.canvases * canvasVoxels),
    canvasVoxels: packing.canvases * canvasVoxels,
    // What the network runs: each canvas at its occupied extent (a canvas's unused far side is
    // not computed), so the compute a packing wastes is (ran − filled), not (canvasVoxels − filled).
    ranVoxels: exts.reduce((n, e) => n + e[0] * e[1] * e[2], 0),
    decoded: reader.decoded(),
    needed: reader.needed(),
  };
}

/**
 * Every canvas's reads (crops' sources, or the larger regions of a context fill), read once in
 * storage-chunk order: consecutive reads share storage chunks, so each is decoded once even with
 * a small cache, and what stays in memory is the voxels the canvases need rather than a block's
 * worth of decoded chunks. `take` hands a read out and drops it after its last use.
 */
async function readSources(reads: ReadonlyArray<{ canvas: number; box: Box }>, reader: CachedReader, chunk: Vec3) {
  const key = (b: Box) => `${b.begin}|${b.end}`;
  // Uses = canvases that read the source (a canvas reads each of its sources once).
  const uses = new Map<string, number>();
  const seen = new Set<string>();
  const unique: Box[] = [];
  for (const r of reads) {
    const k = key(r.box);
    if (seen.has(`${r.canvas}:${k}`)) continue;
    seen.add(`${r.canvas}:${k}`);
    if (!uses.has(k)) unique.push(r.box);
    uses.set(k, (uses.get(k) ?? 0) + 1);
  }
  // The axis the sources span the most storage chunks along goes slowest: the chunks in use at
  // once are then about two slabs across the other two axes (EM blocks are 4 chunks deep and 8
  // wide: 64 chunks live instead of 128 in z-first order).
  const cell = (b: Box) => b.begin.map((v, a) => Math.floor(Math.max(0, v) / chunk[a]));
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (const b of unique) cell(b).forEach((v, a) => { lo[a] = Math.min(lo[a], v); hi[a] = Math.max(hi[a], v); });
  const span = [0, 1, 2].map((a) => hi[a] - lo[a]);
  const axes = [0, 1, 2].sort((a, b) => span[b] - span[a] || a - b);
  const byChunk = (a: Box, b: Box) => {
    const ca = cell(a), cb = cell(b);
    return ca[axes[0]] - cb[axes[0]] || ca[axes[1]] - cb[axes[1]] || ca[axes[2]] - cb[axes[2]] || compareBoxes(a, b);
  };
  const held = new Map<string, Array3>();
  for await (const [b, a] of readAhead(unique.sort(byChunk), (b) => reader.read(b), 4)) held.set(key(b), a);
  return {
    take(b: Box): Array3 {
      const k = key(b);
      const a = held.get(k)!;
      const left = uses.get(k)! - 1;
      if (left > 0) uses.set(k, left); else held.delete(k);
      return a;
    },
  };
}
