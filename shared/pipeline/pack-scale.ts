// Scale packing: boxes keep their own size and scale (no slots, no context growth) and are
// packed into canvases by a deterministic 3D bin-packing heuristic: first-fit decreasing by
// volume (ties: larger shape lexicographically, then input order) over extreme points
// (candidate corners, tried in z, y, x lexicographic order; placing an item at p adds the
// points p + its extent along each axis).
//
// A box longer than the canvas along an axis: 'resize' scales it down to the canvas length
// there; 'crop_and_resize' splits it into the fewest canvas-length pieces, spread evenly, whose
// targets split the overlaps at their middles (cropThreshold is not used: nothing that fits
// the canvas needs cropping, and pieces are never resized). maxPerCanvas caps placements per
// canvas.
import { type Box, type Vec3, box, boxAt, intersect, isEmpty } from '../geometry/box.ts';
import type { Candidate } from './boxes.ts';
import { type PackOptions, type Placement, type Span, prod, product3, splitAxis, vec } from './pack-common.ts';

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
}

function compareVec(a: Vec3, b: Vec3): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

export function packScale(boxes: readonly Candidate[], o: PackOptions): { canvases: number; placements: Placement[] } {
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
  pieces.sort((a, b) => prod(b.shape) - prod(a.shape) || -compareVec(a.shape, b.shape) || a.index - b.index);

  const max = o.maxPerCanvas ?? Infinity;
  const canvases: CanvasState[] = [];
  const placements: Placement[] = [];
  const fitsAt = (cs: CanvasState, p: Vec3, s: Vec3): Box | undefined => {
    if (p[0] + s[0] > C[0] || p[1] + s[1] > C[1] || p[2] + s[2] > C[2]) return undefined;
    const b = boxAt(p, s);
    for (const q of cs.placed) if (!isEmpty(intersect(q, b))) return undefined;
    return b;
  };
  for (const piece of pieces) {
    let done = false;
    for (let ci = 0; ci <= canvases.length && !done; ci++) {
      if (ci === canvases.length) canvases.push({ placed: [], points: [[0, 0, 0]] });
      const cs = canvases[ci];
      if (cs.placed.length >= max) continue;
      for (let pi = 0; pi < cs.points.length; pi++) {
        const p = cs.points[pi];
        const dest = fitsAt(cs, p, piece.shape);
        if (!dest) continue;
        cs.placed.push(dest);
        cs.points.splice(pi, 1);
        for (let a = 0; a < 3; a++) {
          const q = vec((b) => (b === a ? p[b] + piece.shape[b] : p[b]));
          if (q[a] < C[a] && !cs.points.some((r) => compareVec(r, q) === 0)) cs.points.push(q);
        }
        cs.points.sort(compareVec);
        placements.push({ boxId: piece.boxId, canvas: ci, source: piece.source, dest, resized: piece.resized, target: piece.target });
        done = true;
        break;
      }
    }
  }
  return { canvases: canvases.length, placements };
}
