// Task `stage2`: select and order the boxes the chunks of one block (`pack.chunks`) own, pack them into canvases (with
// `pack.context` read around each box but never pasted back), run the full-resolution network
// on the canvases and persist each crop's prediction for its target only, quantised to 16 bits
// (|Δp| ≤ 7.7·10⁻⁶: far below anything that moves an arg-max; a quarter of float32 on disk
// after the canvases' unused space is dropped). Canvases hold the boxes of one block only, so
// their reads stay local; boxes.jsonl under the output lists the block's boxes and placements.
import { type Box, type Vec3, boxOfShape, grow, intersect, volumeOf } from '../geometry/box.ts';
import { array3 } from '../array/array3.ts';
import { normalize } from '../infer/model.ts';
import { policyByName } from '../pipeline/select.ts';
import { type Packing, pack, unpackCanvas } from '../pipeline/pack.ts';
import { channelOf, occupied, stage2 } from '../pipeline/stage2.ts';
import pLimit from 'p-limit';
import { cachedReader } from '../volume/source.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { readBoxes } from './boxes.ts';
import { ONE } from './graph.ts';
import { forEachIndex, relatedBlocks } from '../geometry/grid.ts';
import { type OwnedBox, byBox } from '../pipeline/boxes-merge.ts';
import { writeBoxesLines } from './boxes-output.ts';

export interface Stage2Crop {
  boxId: number;
  source: Box;
  target: Box;
}

export interface Stage2Header {
  channels: number;
  crops: Stage2Crop[];
}

/** A stage-two result: crops in paste order and their quantised values, per channel. */
export interface Stage2Result {
  channels: number;
  crops: Stage2Crop[];
  values: Uint16Array;
}

export const QUANT = 65535;

/**
 * The boxes of every chunk of stage-two block `b`, in one order that does not depend on how the
 * block is cut into chunks (so two chunk sizes with the same block pack the same canvases).
 */
async function blockBoxes(ctx: TaskContext, b: Vec3): Promise<OwnedBox[]> {
  const bx = ctx.graph.kinds.find((k) => k.name === 'boxes')!;
  const chunks: Vec3[] = [];
  forEachIndex(relatedBlocks(b, ctx.config.pack.chunks, [0, 0, 0], ONE, bx.range), (i) => chunks.push(i));
  const all = (await Promise.all(chunks.map((i) => readBoxes(ctx, i)))).flat();
  return all.sort(byBox).map((x, id) => ({ ...x, id }));
}

export async function stage2Task(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const card = ctx.cards.fullres;
  const owned = await blockBoxes(ctx, index);
  const chosen = policyByName(c.select.policy).select(owned, { maxBoxes: c.select.maxBoxes > 0 ? c.select.maxBoxes : undefined });
  const vol = boxOfShape(ctx.src.shape);
  const ctxm = c.pack.context;
  const withContext = ctxm.some((v) => v > 0);
  const packed = withContext ? chosen.map((b) => ({ ...b, box: intersect(grow(b.box, ctxm), vol) })) : chosen;
  const packing: Packing = pack(packed, {
    canvas: c.pack.canvas, slot: c.pack.crop, heuristic: c.pack.heuristic, postprocess: c.pack.postprocess,
    cropThreshold: c.boxes.cropThreshold, maxPerCanvas: c.pack.maxPerCanvas > 0 ? c.pack.maxPerCanvas : undefined,
    bounds: vol,
  });
  if (withContext) {
    const own = new Map(chosen.map((b) => [b.id, b.box]));
    packing.placements = packing.placements.map((p) => ({ ...p, target: intersect(p.target, own.get(p.boxId)!) }));
  }

  const fill = c.pack.fill === 'zero' ? 0 : normalize([0], card.normalization)[0];
  const reader = cachedReader(ctx.src, ctx.inputCache);
  const read = async (b: Box) => {
    const raw = await ctx.timings.time('read', () => reader.read(b));
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
    const ext = occupied(packing, [i], card.divisor).join(',');
    if (groups.length && ext === last && groups[groups.length - 1].length < batch) groups[groups.length - 1].push(i);
    else groups.push([i]);
    last = ext;
  }
  const limit = pLimit(ctx.pool.size + 1);
  const preds = await ctx.timings.time('canvases', () => Promise.all(groups.map((g) => limit(() => stage2(packing, g, read, ctx.fullres, {
    batch, mirror: c.stage2.mirror, fill, signal: ctx.signal,
  })))));

  const crops: Stage2Crop[] = [];
  const parts: Uint16Array[] = [];
  let channels = 0;
  for (const p of preds.flat()) {
    channels = p.channels;
    const perChannel = Array.from({ length: p.channels }, (_, ch) => unpackCanvas(packing, p.canvas, channelOf(p, ch, packing.canvasShape)));
    perChannel[0].forEach((u, k) => {
      crops.push({ boxId: u.placement.boxId, source: u.placement.source, target: u.target });
      for (const pc of perChannel) parts.push(quantise(pc[k].values.data));
    });
  }
  const total = parts.reduce((n, q) => n + q.length, 0);
  const values = new Uint16Array(total);
  let at = 0;
  for (const q of parts) { values.set(q, at); at += q.length; }
  const header: Stage2Header = { channels, crops };
  await ctx.work.writeBinary('stage2', index, header, new Uint8Array(values.buffer));
  await writeBoxesLines(ctx, index, chosen, packing);
  const canvasVoxels = volumeOf(boxOfShape(packing.canvasShape));
  return {
    boxes: chosen.length,
    canvases: packing.canvases,
    filled: Math.round(packing.fillRatio * packing.canvases * canvasVoxels),
    canvasVoxels: packing.canvases * canvasVoxels,
    decoded: reader.decoded(),
    needed: reader.needed(),
  };
}

function quantise(p: Float32Array): Uint16Array {
  const q = new Uint16Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    q[i] = v <= 0 ? 0 : v >= 1 ? QUANT : Math.round(v * QUANT);
  }
  return q;
}

export async function readStage2(ctx: TaskContext, index: Vec3): Promise<Stage2Result> {
  const { header, body } = await ctx.work.readBinary<Stage2Header>('stage2', index);
  return { channels: header.channels, crops: header.crops, values: new Uint16Array(body.buffer, body.byteOffset, body.byteLength / 2) };
}
