// Whole-FAFB arithmetic for the CPU-side simulation (bench/cpu-sim.ts): where the tissue is, how
// many tasks of each kind the grid holds with and without a tissue mask, and how much each task
// of the instance-id reduction holds (what crosses its children's open faces). Pure arithmetic:
// no files, no task code.
//
// The tissue: FAFB's neuropil is ≈ 5·10¹³ voxels of an 8.0·10¹⁴-voxel bounding box (design.md).
// Modelled as an ellipsoid centred in the box, spanning every section (z) and scaled in y and x
// with the fly brain's aspect (≈ 590 × 340 µm) to hold 5·10¹³ voxels: a tissue mask skips the
// chunks it does not meet; objects lie only inside it.
import type { Box, Vec3 } from '../shared/geometry/box.ts';
import { type Range3, blocksMeeting, chunkBox, linearOf, rangeSize } from '../shared/geometry/grid.ts';
import { levelBlock, openFaces, regionChildren, regionChunks, treeLevels } from '../shared/geometry/tree.ts';
import { otherAxes } from '../shared/pipeline/border.ts';

export const NEUROPIL_VOXELS = 5e13;
/** Brain width over height (x over y), µm. */
const ASPECT_X_OVER_Y = 590 / 340;

export interface Tissue {
  centre: Vec3;
  /** Semi-axes, voxels. */
  semi: Vec3;
}

export function fafbTissue(shape: Vec3, voxels = NEUROPIL_VOXELS): Tissue {
  // (4/3)π · (Z/2)(fy·Y/2)(fx·X/2) = voxels, fx = aspect·fy·(Y/X)·… in µm: fx·X = aspect·fy·Y.
  const fyfx = voxels / ((Math.PI / 6) * shape[0] * shape[1] * shape[2]);
  const ratio = (ASPECT_X_OVER_Y * shape[1]) / shape[2]; // fx / fy
  const fy = Math.sqrt(fyfx / ratio);
  const fx = fy * ratio;
  return { centre: [shape[0] / 2, shape[1] / 2, shape[2] / 2], semi: [shape[0] / 2, (fy * shape[1]) / 2, (fx * shape[2]) / 2] };
}

/** Whether box b meets the tissue (its point closest to the centre lies inside). */
export function meetsTissue(t: Tissue, b: Box): boolean {
  let s = 0;
  for (let a = 0; a < 3; a++) {
    const p = Math.min(Math.max(t.centre[a], b.begin[a]), b.end[a]);
    s += ((p - t.centre[a]) / t.semi[a]) ** 2;
  }
  return s <= 1;
}

/** The chunk faces of a rectangle on plane `p` (voxels) across `axis` whose centres lie in the tissue. */
function faceChunksInTissue(t: Tissue, axis: number, p: number, lo: Vec3, hi: Vec3, chunk: Vec3, volume: Vec3): number {
  const [u, v] = otherAxes(axis);
  const r0 = 1 - ((p - t.centre[axis]) / t.semi[axis]) ** 2;
  if (r0 <= 0) return 0;
  let n = 0;
  for (let i = lo[u]; i < hi[u]; i++) {
    const cu = Math.min((i + 0.5) * chunk[u], volume[u]);
    const s = r0 - ((cu - t.centre[u]) / t.semi[u]) ** 2;
    if (s <= 0) continue;
    const half = t.semi[v] * Math.sqrt(s);
    const j0 = Math.max(lo[v], Math.ceil((t.centre[v] - half) / chunk[v] - 0.5));
    const j1 = Math.min(hi[v] - 1, Math.floor((t.centre[v] + half) / chunk[v] - 0.5));
    if (j1 >= j0) n += j1 - j0 + 1;
  }
  return n;
}

/** Open objects on one face (axis, side) of a range of chunks: ρ per chunk face in the tissue (or all: no tissue). */
export function faceObjects(r: Range3, axis: number, side: number, rho: number, chunk: Vec3, volume: Vec3, tissue?: Tissue): number {
  const p = (side ? r.hi[axis] : r.lo[axis]) * chunk[axis];
  const [u, v] = otherAxes(axis);
  const faces = tissue ? faceChunksInTissue(tissue, axis, p, r.lo, r.hi, chunk, volume) : (r.hi[u] - r.lo[u]) * (r.hi[v] - r.lo[v]);
  return rho * faces;
}

/**
 * Open objects a range of chunks hands up, modelled from its surface: `rho[a]` objects per
 * chunk face (one side) of axis a, on each open face (a face with a neighbour in the run), over
 * the chunk faces in the tissue (or all of them: `tissue` undefined).
 */
export function openObjects(r: Range3, run: Range3, rho: Vec3, chunk: Vec3, volume: Vec3, tissue?: Tissue): number {
  const open = openFaces(r, run);
  let n = 0;
  for (let a = 0; a < 3; a++) {
    for (let side = 0; side < 2; side++) if (open & (1 << (2 * a + side))) n += faceObjects(r, a, side, rho[a], chunk, volume, tissue);
  }
  return n;
}

/** One level of the reduction over the FAFB grid. */
export interface LevelModel {
  level: number;
  /** Regions of the level over the whole grid, and those meeting the tissue (a mask runs only these). */
  tasks: number;
  tasksInTissue: number;
  /** Per task (grid order): modelled open objects its children hand it, and the share of its chunks in the tissue. */
  inputs: Float64Array;
  tissueShare: Float64Array;
  /** The task with the largest input. */
  maxInput: number;
  maxIndex: Vec3;
  /** Children of that task. */
  maxChildren: number;
}

/**
 * Every region of every level: its children's open objects (the merge task's input) from their
 * open faces in the tissue, and its share of tissue chunks (no tissue: objects everywhere, the
 * worst case). A few seconds over FAFB's 8·10⁶ chunks.
 */
export function reductionModel(run: Range3, fanIn: Vec3, chunk: Vec3, volume: Vec3, rho: Vec3, tissue?: Tissue): LevelModel[] {
  const bounds: Box = { begin: [0, 0, 0], end: volume };
  const levels = treeLevels(run, fanIn);
  const out: LevelModel[] = [];
  // Chunks meeting the tissue per level-1 region, summed upwards.
  let inTissue: Float64Array | undefined;
  let prevRange: Range3 | undefined;
  for (let l = 1; l <= levels; l++) {
    const range = blocksMeeting(run, levelBlock(fanIn, l));
    const n = rangeSize(range);
    const inputs = new Float64Array(n);
    const share = new Float64Array(n);
    const count = new Float64Array(n);
    let k = 0;
    let best = -1;
    let bestIdx: Vec3 = [0, 0, 0];
    let bestKids = 0;
    let live = 0;
    for (let z = range.lo[0]; z < range.hi[0]; z++) for (let y = range.lo[1]; y < range.hi[1]; y++) for (let x = range.lo[2]; x < range.hi[2]; x++, k++) {
      const b: Vec3 = [z, y, x];
      const kids = regionChildren(b, l, fanIn, run);
      let sum = 0;
      let tissueChunks = 0;
      for (const c of kids) {
        const cr = l === 1 ? { lo: c, hi: [c[0] + 1, c[1] + 1, c[2] + 1] as Vec3 } : regionChunks(c, l - 1, fanIn, run);
        sum += openObjects(cr, run, rho, chunk, volume, tissue);
        if (l === 1) tissueChunks += !tissue || meetsTissue(tissue, chunkBox(c, chunk, bounds)) ? 1 : 0;
        else tissueChunks += inTissue![linearOf(prevRange!, c)];
      }
      inputs[k] = sum;
      count[k] = tissueChunks;
      share[k] = tissueChunks / rangeSize(regionChunks(b, l, fanIn, run));
      if (tissueChunks > 0) live++;
      if (sum > best) { best = sum; bestIdx = b; bestKids = kids.length; }
    }
    out.push({ level: l, tasks: n, tasksInTissue: live, inputs, tissueShare: share, maxInput: best, maxIndex: bestIdx, maxChildren: bestKids });
    inTissue = count;
    prevRange = range;
  }
  return out;
}

/** Chunks of the grid and those meeting the tissue, and the voxels of each set. */
export function chunkCounts(run: Range3, chunk: Vec3, volume: Vec3, tissue: Tissue): { chunks: number; voxels: number; tissueChunks: number; tissueVoxels: number } {
  const bounds: Box = { begin: [0, 0, 0], end: volume };
  let chunks = 0, voxels = 0, tissueChunks = 0, tissueVoxels = 0;
  for (let z = run.lo[0]; z < run.hi[0]; z++) for (let y = run.lo[1]; y < run.hi[1]; y++) for (let x = run.lo[2]; x < run.hi[2]; x++) {
    const b = chunkBox([z, y, x], chunk, bounds);
    const v = (b.end[0] - b.begin[0]) * (b.end[1] - b.begin[1]) * (b.end[2] - b.begin[2]);
    chunks++;
    voxels += v;
    if (meetsTissue(tissue, b)) { tissueChunks++; tissueVoxels += v; }
  }
  return { chunks, voxels, tissueChunks, tissueVoxels };
}
