// The task graph of a run, as data for the scheduler: which task kinds there are, on which
// blocks of chunks each runs, which range of blocks this run must complete, and what each kind
// needs (daisy's BlockwiseDependencyGraph: a task needs the upstream tasks whose write regions
// meet its read region, here a reach of whole chunks). Pure geometry.
//
//   two-stage:  stage1 (blocks of s chunks) ──boxesReach──▶ boxes (the same blocks) ──▶ stage2 (blocks of pack.chunks)
//               ──reach 1──▶ paste ─────────────────────────────────────────────────────────┐
//   one-stage:  predict (global tile grid) ──reach 1──▶ blend ────────────────────────────────┤
//               ┌─────────────────────────────────────────────────────────────────────────────┘
//               └──reach 1──▶ faces ──▶ merge1 ──▶ … ──▶ mergeL ──▶ resolveL ──▶ … ──▶ resolve1 ──▶ relabel
//                                      (regions of fanIn^l chunks: up, then down; geometry/tree.ts)
//
// Ranges make results independent of the ROI: paste runs on the ROI's chunks; stage2 on the
// blocks meeting those grown by one chunk (a box owned by a neighbour may reach into the ROI);
// boxes on the stage-one blocks holding every chunk of those blocks; stage1 on the blocks within
// the boxes' view of those. So the output inside an ROI equals the output of a whole-volume run
// there, and a later run over a larger ROI reuses every task.
import { type Box, type Vec3, boxOfShape } from '../geometry/box.ts';
import { type Range3, blocksMeeting, chunkRange, intersectRange, range3 } from '../geometry/grid.ts';
import type { Dependency, KindSpec } from '../scheduler.ts';
import type { TesseraConfig } from '../config/config.ts';
import { levelBlock, treeLevels } from '../geometry/tree.ts';
import { ConfigError } from '../errors.ts';

export type TaskKind = 'stage1' | 'boxes' | 'stage2' | 'paste' | 'predict' | 'blend' | 'faces' | `merge${number}` | `resolve${number}` | 'relabel';

/** The level of a `merge<l>` or `resolve<l>` kind, else undefined. */
export function levelOf(kind: string, of: 'merge' | 'resolve'): number | undefined {
  const m = new RegExp(`^${of}([1-9][0-9]*)$`).exec(kind);
  return m ? Number(m[1]) : undefined;
}

/** The kinds of instance ids: they join chunks over the whole ROI, so another ROI computes them anew. */
export function isInstanceKind(kind: string): boolean {
  return kind === 'faces' || kind === 'relabel' || levelOf(kind, 'merge') !== undefined || levelOf(kind, 'resolve') !== undefined;
}

export const ONE: Vec3 = [1, 1, 1];

export interface TaskGraph {
  readonly kinds: KindSpec[];
  readonly deps: Dependency[];
  /** The volume's chunk grid. */
  readonly chunk: Vec3;
  readonly volume: Box;
  /** Chunks per stage-one block. */
  readonly stage1Block: Vec3;
}

function dilate(r: Range3, by: Vec3, clip: Range3): Range3 {
  return intersectRange(range3(
    [r.lo[0] - by[0], r.lo[1] - by[1], r.lo[2] - by[2]],
    [r.hi[0] + by[0], r.hi[1] + by[1], r.hi[2] + by[2]],
  ), clip);
}

/**
 * Stage one runs on blocks of chunks: `stage1.block` voxels when set (then the heatmap, the
 * fragments and the boxes do not depend on `io.chunk`), else `round(resolution factor)` chunks
 * per axis, so that the low-resolution block is about as large as a chunk at full resolution and
 * the sliding window's halo is paid rarely. A block that is not a whole number of chunks is
 * refused, as for `pack.block`.
 */
export function stage1Block(c: TesseraConfig, factor: Vec3): Vec3 {
  // run.json configs written before stage1.block existed have none.
  const b = c.stage1.block ?? [0, 0, 0];
  if (b.every((v) => v === 0)) return factor.map((f) => Math.max(1, Math.round(f))) as unknown as Vec3;
  return blockInChunks('stage1.block', b, c.io.chunk);
}

export function taskGraph(c: TesseraConfig, shape: Vec3, roi: Box, factor: Vec3): TaskGraph {
  const volume = boxOfShape(shape);
  const chunk = c.io.chunk;
  const all = chunkRange(volume, chunk);
  const roiChunks = chunkRange(roi, chunk);
  if (c.mode === 'one-stage') {
    if (c.baseline.patch.some((p, a) => p > chunk[a])) {
      throw new ConfigError('baseline.patch', `[${c.baseline.patch}] is longer than io.chunk [${chunk}]: the global tile grid needs every tile to fit in a chunk`);
    }
    // A chunk's tiles reach into the chunks after it: blend(c) needs predict on c and the
    // chunks before it, so predict runs on the ROI's chunks grown by one towards the origin.
    const predict = intersectRange(range3([roiChunks.lo[0] - 1, roiChunks.lo[1] - 1, roiChunks.lo[2] - 1], roiChunks.hi), all);
    return {
      kinds: [{ name: 'predict', block: ONE, range: predict }, { name: 'blend', block: ONE, range: roiChunks }, ...instanceKinds(roiChunks, c.io.mergeFanIn)],
      deps: [{ kind: 'blend', needs: 'predict', reach: ONE }, ...instanceDeps('blend', roiChunks, c.io.mergeFanIn)], chunk, volume, stage1Block: ONE,
    };
  }
  checkChunkForBoxes(c, factor);
  const s = stage1Block(c, factor);
  const paste = roiChunks;
  const p = stage2Chunks(c);
  // Whole stage-two blocks: a block packs all its chunks' boxes, whatever the ROI.
  const s2 = intersectRange(blocksMeeting(dilate(paste, ONE, all), p), blocksMeeting(all, p));
  const middle = intersectRange(range3([s2.lo[0] * p[0], s2.lo[1] * p[1], s2.lo[2] * p[2]], [s2.hi[0] * p[0], s2.hi[1] * p[1], s2.hi[2] * p[2]]), all);
  // Boxes are planned per stage-one block, from the blocks within its view.
  const bx = intersectRange(blocksMeeting(middle, s), blocksMeeting(all, s));
  const bxChunks = intersectRange(range3([bx.lo[0] * s[0], bx.lo[1] * s[1], bx.lo[2] * s[2]], [bx.hi[0] * s[0], bx.hi[1] * s[1], bx.hi[2] * s[2]]), all);
  const view = boxesReach(c, factor);
  const s1 = intersectRange(blocksMeeting(dilate(bxChunks, view, all), s), blocksMeeting(all, s));
  return {
    kinds: [
      { name: 'stage1', block: s, range: s1 },
      { name: 'boxes', block: s, range: bx },
      { name: 'stage2', block: p, range: s2 },
      { name: 'paste', block: ONE, range: paste },
      ...instanceKinds(paste, c.io.mergeFanIn),
    ],
    deps: [
      { kind: 'boxes', needs: 'stage1', reach: view },
      { kind: 'stage2', needs: 'boxes', reach: [0, 0, 0] },
      { kind: 'paste', needs: 'stage2', reach: ONE },
      // With the stage-one background, paste reads its stage-one block's heatmap: without this
      // edge the heatmap was freed once the boxes tasks were done, before any paste read it.
      ...(c.stage2.background === 'stage1' ? [{ kind: 'paste', needs: 'stage1', reach: [0, 0, 0] as Vec3 }] : []),
      ...instanceDeps('paste', paste, c.io.mergeFanIn),
    ],
    chunk, volume, stage1Block: s,
  };
}

function instanceKinds(chunks: Range3, fanIn: Vec3): KindSpec[] {
  const levels = treeLevels(chunks, fanIn);
  const up: KindSpec[] = [];
  for (let l = 1; l <= levels; l++) up.push({ name: `merge${l}`, block: levelBlock(fanIn, l), range: blocksMeeting(chunks, levelBlock(fanIn, l)) });
  const down = up.map((k, i) => ({ ...k, name: `resolve${i + 1}` })).reverse();
  return [{ name: 'faces', block: ONE, range: chunks }, ...up, ...down, { name: 'relabel', block: ONE, range: chunks }];
}

function instanceDeps(writer: 'paste' | 'blend', chunks: Range3, fanIn: Vec3): Dependency[] {
  const levels = treeLevels(chunks, fanIn);
  const none: Vec3 = [0, 0, 0];
  const deps: Dependency[] = [{ kind: 'faces', needs: writer, reach: ONE }, { kind: 'merge1', needs: 'faces', reach: none }];
  for (let l = 2; l <= levels; l++) deps.push({ kind: `merge${l}`, needs: `merge${l - 1}`, reach: none });
  for (let l = levels; l >= 1; l--) {
    deps.push({ kind: `resolve${l}`, needs: `merge${l}`, reach: none });
    if (l < levels) deps.push({ kind: `resolve${l}`, needs: `resolve${l + 1}`, reach: none });
  }
  // relabel reads the writer's label runs: they are freed only after it.
  deps.push({ kind: 'relabel', needs: 'resolve1', reach: none }, { kind: 'relabel', needs: writer, reach: none });
  return deps;
}

/**
 * How far from a chunk a fragment can still change the boxes the chunk owns: the largest whole
 * box, plus half a lattice tile, plus the growth of a fragment (margin and one cell on each
 * side). Chunk-local box merging (boxes-merge.ts) is exact when a chunk is at least this long:
 * then every box a chunk owns lies within one chunk of it, which is also why paste needs only
 * its 26 neighbours, and the boxes task looks only at fragments this close.
 */
export function mergeReach(c: TesseraConfig, factor: Vec3): Vec3 {
  const tile = c.boxes.mode === 'parents' ? c.boxes.cropThreshold : c.boxes.recrop;
  return [0, 1, 2].map((a) => {
    const cell = Math.ceil(Math.max(1, Math.round(c.boxes.priorDownsample[a])) * factor[a]);
    return c.boxes.cropThreshold[a] + Math.ceil(tile[a] / 2) + 2 * (c.boxes.margin[a] + cell);
  }) as unknown as Vec3;
}

/**
 * The boxes task's view, in chunks per axis: every stage-one block within this many chunks of
 * its block. 4 × cropThreshold + a lattice tile + 2 × (margin + cell) voxels, enough for every
 * box or tile it owns to be decided exactly (boxes-merge.ts says why).
 */
export function boxesReach(c: TesseraConfig, factor: Vec3): Vec3 {
  const tile = c.boxes.mode === 'parents' ? c.boxes.cropThreshold : c.boxes.recrop;
  return [0, 1, 2].map((a) => {
    const cell = Math.ceil(Math.max(1, Math.round(c.boxes.priorDownsample[a])) * factor[a]);
    return Math.ceil((4 * c.boxes.cropThreshold[a] + tile[a] + 2 * (c.boxes.margin[a] + cell)) / c.io.chunk[a]);
  }) as unknown as Vec3;
}

/**
 * Chunks per stage-two block: `pack.block` (voxels) over `io.chunk` when the block is set, else
 * `pack.chunks`. A block that is not a whole number of chunks is refused: it could not keep the
 * canvases the same across chunk sizes, which is what it is for.
 */
export function stage2Chunks(c: TesseraConfig): Vec3 {
  // run.json configs written before pack.block existed have none.
  const b = c.pack.block ?? [0, 0, 0];
  if (b.every((v) => v === 0)) return c.pack.chunks;
  return blockInChunks('pack.block', b, c.io.chunk);
}

/** A block given in voxels, in chunks; a ConfigError naming `key` when it is not a whole number of chunks. */
function blockInChunks(key: string, b: Vec3, chunk: Vec3): Vec3 {
  const bad = [0, 1, 2].filter((a) => b[a] <= 0 || b[a] % chunk[a] !== 0);
  if (bad.length) {
    const suggest = b.map((v, a) => Math.max(1, Math.round(v / chunk[a])) * chunk[a]);
    throw new ConfigError(key, `[${b}] is not a multiple of io.chunk [${chunk}] along ${bad.map((a) => 'zyx'[a]).join(', ')}: choose an io.chunk that divides it, or ${key} [${suggest}]`);
  }
  return b.map((v, a) => v / chunk[a]) as unknown as Vec3;
}

/** The stage-two block in voxels (boxes files and annotation cells are per block). */
export function stage2Block(c: TesseraConfig): Vec3 {
  const p = stage2Chunks(c);
  return c.io.chunk.map((v, a) => v * p[a]) as unknown as Vec3;
}

export function checkChunkForBoxes(c: TesseraConfig, factor: Vec3): void {
  const need = mergeReach(c, factor);
  const tile = c.boxes.mode === 'parents' ? c.boxes.cropThreshold : c.boxes.recrop;
  for (let a = 0; a < 3; a++) {
    if (c.io.chunk[a] < need[a]) {
      const cell = Math.ceil(Math.max(1, Math.round(c.boxes.priorDownsample[a])) * factor[a]);
      throw new ConfigError('io.chunk', `${c.io.chunk.join(',')} is too small along axis ${'zyx'[a]} for chunk-local box merging: needs ≥ ${need[a]} (boxes.cropThreshold ${c.boxes.cropThreshold[a]} + half a ${c.boxes.mode === 'parents' ? 'cropThreshold' : 'recrop'} tile ${Math.ceil(tile[a] / 2)} + 2 × (margin ${c.boxes.margin[a]} + cell ${cell}))`);
    }
  }
}

/** Voxels of the chunks in `r` (clipped to the volume), for coverage and rates. */
export function rangeVoxels(r: Range3, chunk: Vec3, volume: Box): number {
  let n = 1;
  for (let a = 0; a < 3; a++) {
    const lo = Math.max(volume.begin[a], r.lo[a] * chunk[a]);
    const hi = Math.min(volume.end[a], r.hi[a] * chunk[a]);
    n *= Math.max(0, hi - lo);
  }
  return n;
}
