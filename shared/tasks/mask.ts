// Tissue masks in the task graph: which tasks can be skipped, and background outside the mask.
//
// A task is skipped when no tissue lies in its *reach*: the chunks whose output it can change,
// through every task downstream of it. Skipping it then changes nothing any tissue chunk reads,
// so the output in tissue is bit-identical to an unmasked run's (and outside it, background):
//
//   paste, blend   its chunk (and relabel: it paints what they wrote)
//   predict        its chunk and the next one along each axis (its tiles' sums reach those)
//   stage2 block   its chunks grown by one chunk (a box owned by a chunk reaches only its
//                  neighbours, and canvases mix every box of the block, so a block with tissue
//                  near any of its chunks runs whole)
//   boxes block    the reach of every stage-two block meeting its chunks (they read its boxes)
//   stage1 block   the reach of every boxes block within the boxes view (graph.ts boxesReach)
//
// Each reach holds the reach of every task reading the result, so a task that runs never needs
// the result of a skipped one. A skipped paste or blend leaves an empty objects table, border and
// label runs (instances.ts), so faces, merge and resolve run as ever (cheap on them); relabel
// skips the chunk (nothing to paint). Object ids follow the id rule over what the mask leaves.
import { type Box, type Vec3, box, intersect } from '../geometry/box.ts';
import { type Range3, blockReach, blocksMeeting, range3 } from '../geometry/grid.ts';
import type { Array3 } from '../array/array3.ts';
import { anyTissue, maskOut } from '../volume/mask.ts';
import { anyStored } from '../volume/zarr.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { boxesReach, stage2Chunks } from './graph.ts';

export interface ReachGeometry {
  /** Chunks per stage-one block. */
  stage1Block: Vec3;
  /** Chunks per stage-two block. */
  stage2Block: Vec3;
  /** The boxes task's view, in chunks (boxesReach). */
  view: Vec3;
}

const ZERO: Vec3 = [0, 0, 0];
const ONE: Vec3 = [1, 1, 1];

/** Chunks of the blocks (of `block` chunks) in `r`. */
function chunksOf(r: Range3, block: Vec3): Range3 {
  return range3(r.lo.map((v, a) => v * block[a]) as unknown as Vec3, r.hi.map((v, a) => v * block[a]) as unknown as Vec3);
}

function grown(r: Range3, by: Vec3): Range3 {
  return range3(r.lo.map((v, a) => v - by[a]) as unknown as Vec3, r.hi.map((v, a) => v + by[a]) as unknown as Vec3);
}

/** The stage-two blocks meeting chunks `r`, their chunks grown by one: what those blocks' crops reach. */
function stage2Reach(r: Range3, g: ReachGeometry): Range3 {
  return grown(chunksOf(blocksMeeting(r, g.stage2Block), g.stage2Block), ONE);
}

/** The chunks (unclipped) whose output task `kind` at `index` can change; undefined for kinds never skipped. */
export function tissueReach(kind: string, index: Vec3, g: ReachGeometry): Range3 | undefined {
  switch (kind) {
    case 'paste':
    case 'blend':
    case 'relabel': return blockReach(index, ONE, ZERO);
    case 'predict': return range3(index, index.map((v) => v + 2) as unknown as Vec3);
    case 'stage2': return grown(blockReach(index, g.stage2Block, ZERO), ONE);
    case 'boxes': return stage2Reach(blockReach(index, g.stage1Block, ZERO), g);
    case 'stage1': {
      const boxes = blocksMeeting(blockReach(index, g.stage1Block, g.view), g.stage1Block);
      return stage2Reach(chunksOf(boxes, g.stage1Block), g);
    }
    default: return undefined;
  }
}

/** Chunks `r` as a voxel box, clipped to the volume. */
export function reachBox(r: Range3, chunk: Vec3, volume: Box): Box {
  return intersect(box(r.lo.map((v, a) => v * chunk[a]) as unknown as Vec3, r.hi.map((v, a) => v * chunk[a]) as unknown as Vec3), volume);
}

export function reachGeometry(ctx: TaskContext): ReachGeometry {
  return { stage1Block: ctx.graph.stage1Block, stage2Block: stage2Chunks(ctx.config), view: ctx.low ? boxesReach(ctx.config, ctx.low.factor) : ZERO };
}

/** Why a task is skipped: no tissue in its reach (the mask), or no stored input chunk there (io.missingChunks "fill"). */
export type Skip = 'mask' | 'missing';

/**
 * Is task `kind` at `index` skipped, and why? `mask`: the run's mask has no tissue in its reach.
 * `missing` (io.missingChunks "fill" only): no full-resolution storage chunk of the input in its
 * reach has a file, so everything it could change would be computed from the fill value (FAFB's
 * never-written chunks): it is background instead, and the network never runs on it.
 */
export async function skipOf(ctx: TaskContext, kind: string, index: Vec3): Promise<Skip | undefined> {
  const missing = ctx.config.io.missingChunks === 'fill';
  if (!ctx.mask && !missing) return undefined;
  const r = tissueReach(kind, index, reachGeometry(ctx));
  if (!r) return undefined;
  const b = reachBox(r, ctx.graph.chunk, ctx.graph.volume);
  if (ctx.mask && !(await ctx.timings.time('mask', () => anyTissue(ctx.mask!, b, ctx.src.io)))) return 'mask';
  if (missing && !(await ctx.timings.time('mask', () => anyStored(ctx.src.full.array, b)))) return 'missing';
  return undefined;
}

/**
 * A skipped task's counters. Mask: `skip.<kind>` (tasks), and for the chunk writers
 * `skippedVoxels` (their chunks' voxels, all background) and `maskedVoxels` (background set by
 * the mask). Missing input: `missing.<kind>` and `missingVoxels`.
 */
export function skipped(kind: string, why: Skip, chunkVoxels = 0): TaskStats {
  if (why === 'missing') return chunkVoxels ? { [`missing.${kind}`]: 1, missingVoxels: chunkVoxels } : { [`missing.${kind}`]: 1 };
  return chunkVoxels ? { [`skip.${kind}`]: 1, skippedVoxels: chunkVoxels, maskedVoxels: chunkVoxels } : { [`skip.${kind}`]: 1 };
}

/**
 * Background outside the mask in a chunk that runs (segmentation and every probability
 * channel), before it is written and labelled. Returns the voxels the mask set to background.
 */
export async function maskChunk(ctx: TaskContext, write: Box, seg: Array3<Uint8Array>, probs: readonly Array3<Float32Array>[]): Promise<number> {
  if (!ctx.mask) return 0;
  return ctx.timings.time('mask', () => maskOut(ctx.mask!, write, seg.data, probs.map((p) => p.data), ctx.src.io));
}
