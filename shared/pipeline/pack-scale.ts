// Scale packing: boxes keep their own size and scale (no slots, no context growth) and are
// packed into canvases by a deterministic 3D bin-packing heuristic: first-fit decreasing by
// volume (ties: larger shape lexicographically, then input order) over extreme points
// (candidate corners, tried in z, y, x lexicographic order). Placing an item at p adds the
// corners p + its extent along each axis, each also projected back along the other two axes
// onto the nearest placed face or the canvas wall (Crainic, Perboli & Tadei 2008): without the
// projections, corners float above the gaps that smaller items could fill.
// No single item order wins on every box population (crops 5–15 deep in a 16-deep canvas pair
// up only when the deep ones go first; flat populations favour volume order), so a few orders ×
// point orders are tried and the packing the network runs fewest voxels for is kept (each
// canvas at its occupied extent rounded up to the divisor, as stage two runs it; ties: fewer
// canvases, then the first tried): that is the compute. Counting canvases instead kept
// packings whose canvases ran nearly whole for fewer crops: on tuning seeds 21, 22 (EM) and 23,
// 24 (CT), 1 % foreground, the voxels run fell 0.5–1.6 % (fill of what ran 0.865–0.887 →
// 0.879–0.894) for at most two more canvases, Dice within ±0.0002. Four more item orders and
// two more corner orders (28 tries) cut a few % more on sparser volumes, but packing (on the
// main thread) then took longer than the network time it saved. Measured on tuning seeds,
// never on the bench volume.
//
// A box longer than the canvas along an axis: 'resize' scales it down to the canvas length
// there; 'crop_and_resize' splits it into the fewest canvas-length pieces, spread evenly, whose
// targets split the overlaps at their middles (cropThreshold is not used: nothing that fits
// the canvas needs cropping, and pieces are never resized). maxPerCanvas caps placements per
// canvas.
import { type Box, type Vec3, box, boxAt, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import type { Candidate } from './boxes.ts';
import { type PackOptions, type Placement, type Span, prod, product3, runExtent, splitAxis, vec } from './pack-common.ts';

interface Piece {
  boxId: number;
  source: Box;
  target: Box;
  shape: Vec3;
  resized: boolean;
  index: number;
}

interface CanvasState {
  placed: Box[];
  points: Vec3[];
  /** Voxels its held boxes take (they never overlap): a piece larger than the rest cannot fit. */
  used: number;
}

function compareVec(a: Vec3, b: Vec3): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

function inside(q: Vec3, b: Box): boolean {
  return q[0] >= b.begin[0] && q[0] < b.end[0] && q[1] >= b.begin[1] && q[1] < b.end[1] && q[2] >= b.begin[2] && q[2] < b.end[2];
}

/**
 * Slide point q towards 0 along axis b until it meets the far face of a placed box whose
 * extent covers q on the other two axes (or the canvas wall).
 */
function project(placed: readonly Box[], q: Vec3, b: number): Vec3 {
  let to = 0;
  for (const r of placed) {
    if (r.end[b] > q[b]) continue;
    let covers = true;
    for (let c = 0; c < 3; c++) if (c !== b && (q[c] < r.begin[c] || q[c] >= r.end[c])) covers = false;
    if (covers && r.end[b] > to) to = r.end[b];
  }
  return vec((c) => (c === b ? to : q[c]));
}

export function packScale(boxes: readonly Candidate[], o: PackOptions): Packed {
  const divisor = o.divisor ?? [1, 1, 1];
  let best: (Packed & { ran: number }) | undefined;
  for (const r of scaleTries(boxes, o)) {
    const ran = ranVoxels(r, o.canvas, divisor);
    if (!best || ran < best.ran || (ran === best.ran && r.canvases < best.canvases)) best = { ...r, ran };
  }
  return { canvases: best!.canvases, placements: best!.placements };
}

type Packed = { canvases: number; placements: Placement[] };

/** The boxes as pieces no longer than the canvas (split or resized per `postprocess`). */
function scalePieces(boxes: readonly Candidate[], o: PackOptions): Piece[] {
  const C = o.canvas;
  const pieces: Piece[] = [];
  for (const c of boxes) {
    const axes = [0, 1, 2].map((a): Span[] => {
      const lo = c.box.begin[a], hi = c.box.end[a];
      return o.postprocess === 'resize' || hi - lo <= C[a] ? [{ lo, hi, tlo: lo, thi: hi }] : splitAxis(lo, hi, C[a]);
    });
    for (const s of product3([axes[0], axes[1], axes[2]])) {
      const shape = vec((a) => Math.min(s[a].hi - s[a].lo, C[a]));
      pieces.push({
        boxId: c.id,
        source: box(vec((a) => s[a].lo), vec((a) => s[a].hi)),
        target: box(vec((a) => s[a].tlo), vec((a) => s[a].thi)),
        shape,
        resized: s.some((x, a) => x.hi - x.lo !== shape[a]),
        index: pieces.length,
      });
    }
  }
  return pieces;
}

/** Every item order × corner order packScale tries, in order. */
export function* scaleTries(boxes: readonly Candidate[], o: PackOptions): Generator<Packed> {
  const pieces = scalePieces(boxes, o);
  for (const order of ITEM_ORDERS) {
    for (const points of POINT_ORDERS) {
      yield packOrdered([...pieces].sort((a, b) => order(a, b) || a.index - b.index), o.canvas, o.maxPerCanvas ?? Infinity, points, o.gap ?? [0, 0, 0]);
    }
  }
}

/** Voxels the network runs for a packing: each canvas at its occupied extent, rounded up to `divisor`. */
export function ranVoxels(r: { canvases: number; placements: readonly Placement[] }, C: Vec3, divisor: Vec3): number {
  const ext = new Int32Array(r.canvases * 3);
  for (const p of r.placements) for (let a = 0; a < 3; a++) ext[p.canvas * 3 + a] = Math.max(ext[p.canvas * 3 + a], p.dest.end[a]);
  let n = 0;
  for (let c = 0; c < r.canvases; c++) n += prod(runExtent(ext.subarray(c * 3, c * 3 + 3), C, divisor));
  return n;
}

type Order<T> = (a: T, b: T) => number;
const byVolume: Order<Piece> = (a, b) => prod(b.shape) - prod(a.shape) || -compareVec(a.shape, b.shape);
const ITEM_ORDERS: Order<Piece>[] = [
  byVolume,
  (a, b) => b.shape[0] - a.shape[0] || byVolume(a, b),
  (a, b) => b.shape[1] * b.shape[2] - a.shape[1] * a.shape[2] || byVolume(a, b),
];
const POINT_ORDERS: Order<Vec3>[] = [compareVec, (a, b) => a[1] + a[2] - (b[1] + b[2]) || compareVec(a, b)];

/**
 * A placement occupies its dest plus `gap` on its far sides (clipped at the canvas wall): two
 * occupied boxes never meet, so any two crops are `gap` apart along some axis.
 */
function packOrdered(pieces: readonly Piece[], C: Vec3, max: number, pointOrder: Order<Vec3>, gap: Vec3): { canvases: number; placements: Placement[] } {
  const canvases: CanvasState[] = [];
  const placements: Placement[] = [];
  const fitsAt = (cs: CanvasState, p: Vec3, s: Vec3): Box | undefined => {
    if (p[0] + s[0] > C[0] || p[1] + s[1] > C[1] || p[2] + s[2] > C[2]) return undefined;
    const b = boxAt(p, vec((a) => Math.min(s[a] + gap[a], C[a] - p[a])));
    for (const q of cs.placed) if (!isEmpty(intersect(q, b))) return undefined;
    return b;
  };
  const room = prod(C);
  for (const piece of pieces) {
    const need = prod(piece.shape);
    let done = false;
    for (let ci = 0; ci <= canvases.length && !done; ci++) {
      if (ci === canvases.length) canvases.push({ placed: [], points: [[0, 0, 0]], used: 0 });
      const cs = canvases[ci];
      if (cs.placed.length >= max || room - cs.used < need) continue;
      for (let pi = 0; pi < cs.points.length; pi++) {
        const p = cs.points[pi];
        const held = fitsAt(cs, p, piece.shape);
        if (!held) continue;
        cs.placed.push(held);
        cs.used += prod(shapeOf(held));
        const dest = boxAt(p, piece.shape);
        cs.points.splice(pi, 1);
        // A corner inside a held box can never take one (exact pruning: it keeps the lists short).
        cs.points = cs.points.filter((q) => !inside(q, held));
        const add = (q: Vec3) => {
          if (q.every((v, a) => v < C[a]) && !cs.points.some((r) => compareVec(r, q) === 0) && !cs.placed.some((r) => inside(q, r))) cs.points.push(q);
        };
        for (let a = 0; a < 3; a++) {
          const q = vec((b) => (b === a ? held.end[b] : p[b]));
          if (q[a] >= C[a]) continue;
          add(q);
          for (let b = 0; b < 3; b++) if (b !== a) add(project(cs.placed, q, b));
        }
        cs.points.sort(pointOrder);
        placements.push({ boxId: piece.boxId, canvas: ci, source: piece.source, dest, resized: piece.resized, target: piece.target });
        done = true;
        break;
      }
    }
  }
  return { canvases: canvases.length, placements };
}
