// Canvas packing ("stitch"): crops of arbitrary shape are placed into fixed-shape canvases for
// stage two; each placement maps a source box of the volume to a dest box of a canvas
// (possibly resized), and names the target box its prediction is pasted back to.
//
// Heuristics (details in their modules):
// - 'grid'   (pack-grid.ts):   one piece per slot, small pieces get real context, big ones are
//                              resized ('resize') or cut into cropThreshold pieces first
//                              ('crop_and_resize').
// - 'jigsaw' (pack-jigsaw.ts): neighbouring tiles (children of one parent, pieces of one box)
//                              are laid out as they lie in the volume; the rest as grid.
// - 'scale'  (pack-scale.ts):  variable-size crops at scale 1, 3D bin packing.
//
// Invariants (tested): dest ⊆ canvas; dests of one canvas never overlap; target ⊆ source;
// dest shape = source shape unless resized; every voxel of every input box lies in the target
// of at least one placement; deterministic; unpack inverts assemble exactly when not resized.
// Empty input boxes are ignored.
import { type Box, type Vec3, box, isEmpty, shapeOf } from '../geometry/box.ts';
import { type Array3, copyRegion, crop, zeros } from '../array/array3.ts';
import { resizeLinear } from '../array/resample.ts';
import type { Candidate } from './boxes.ts';
import { type PackOptions, type Packing, type Placement, finishPacking, validatePackOptions } from './pack-common.ts';
import type { ContextFill } from './pack-fill.ts';
import { gridItems, packSlots } from './pack-grid.ts';
import { jigsawItems } from './pack-jigsaw.ts';
import { packScale } from './pack-scale.ts';

export type { PackHeuristic, PackOptions, Packing, Placement, Postprocess } from './pack-common.ts';

export function pack(boxes: readonly Candidate[], o: PackOptions): Packing {
  validatePackOptions(o);
  const live = boxes.filter((b) => !isEmpty(b.box));
  let r: { canvases: number; placements: Placement[] };
  switch (o.heuristic) {
    case 'grid':
      r = packSlots(live.flatMap((c) => gridItems(c, o)), o, false);
      break;
    case 'jigsaw':
      r = packSlots(jigsawItems(live, o), o, true);
      break;
    case 'scale':
      r = packScale(live, o);
      break;
    default: {
      const never: never = o.heuristic;
      throw new RangeError(`pack: unknown heuristic ${String(never)}`);
    }
  }
  return finishPacking(o.canvas, r.canvases, r.placements);
}

/**
 * `b` grown by `context` voxels on each side (`pack.context`), except that along an axis where
 * the box fits the canvas, the context is cut to what still fits (`pack.contextFit: clip`):
 * context never splits a box that would fit whole (a split piece needs canvas room of its own —
 * a 16-deep child with one section of context each side took two 16-deep pieces, alone in two
 * canvases).
 */
export function growContext(b: Box, context: Vec3, canvas: Vec3): Box {
  const lo = [0, 0, 0], hi = [0, 0, 0];
  for (let a = 0; a < 3; a++) {
    const spare = canvas[a] - (b.end[a] - b.begin[a]);
    lo[a] = spare < 0 ? context[a] : Math.min(context[a], Math.floor(spare / 2));
    hi[a] = spare < 0 ? context[a] : Math.min(context[a], spare - lo[a]);
  }
  return box([b.begin[0] - lo[0], b.begin[1] - lo[1], b.begin[2] - lo[2]], [b.end[0] + hi[0], b.end[1] + hi[1], b.end[2] + hi[2]]);
}

function sameShape(a: Vec3, b: Vec3): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

/**
 * Build canvas `canvasIndex`: `fill` everywhere, then each placement's source (read from the
 * volume by `read`, which must return an array of the box's shape, padding outside the
 * volume) written at its dest, resized with resizeLinear where the placement is resized. With
 * `context` (pack-fill.ts, computed for this canvas's placements in order), each placement
 * reads its `reads` box instead and also fills the voxels it owns around its dest.
 */
export function assembleCanvas(
  packing: Packing, canvasIndex: number, read: (source: Box) => Array3<Float32Array>, fill: number, context?: ContextFill,
): Array3<Float32Array> {
  const canvas = zeros(packing.canvasShape);
  if (fill !== 0) canvas.data.fill(fill);
  const ps = packing.placements.filter((p) => p.canvas === canvasIndex);
  const got = ps.map((p, i) => {
    const want = context ? context.reads[i] : p.source;
    const src = read(want);
    if (!sameShape(src.shape, shapeOf(want))) {
      throw new RangeError(`assembleCanvas: read returned ${src.shape.join('x')} for a box of ${shapeOf(want).join('x')}`);
    }
    return src;
  });
  if (context) {
    const [D, H, W] = context.ext;
    const [, CH, CW] = packing.canvasShape;
    // Canvas voxel (z, y, x) of owner i is read element base[i] + (z·h + y)·w + x of its read.
    const hw = got.map((g) => [g.shape[1], g.shape[2]]);
    const base = ps.map((p, i) => {
      const [oz, oy, ox] = [0, 1, 2].map((a) => p.source.begin[a] - p.dest.begin[a] - context.reads[i].begin[a]);
      return (oz * hw[i][0] + oy) * hw[i][1] + ox;
    });
    for (let z = 0, v = 0; z < D; z++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++, v++) {
      const i = context.owners[v];
      if (i < 0) continue;
      canvas.data[(z * CH + y) * CW + x] = got[i].data[base[i] + (z * hw[i][0] + y) * hw[i][1] + x];
    }
  }
  ps.forEach((p, i) => {
    if (context && !p.resized) return; // its dest is among the voxels it owns
    const dShape = shapeOf(p.dest); // a resized placement reads its source in either case
    const content = p.resized || !sameShape(shapeOf(p.source), dShape) ? resizeLinear(got[i], dShape) : got[i];
    copyRegion(content, p.dest.begin, canvas, [0, 0, 0], p.dest);
  });
  return canvas;
}

export interface Unpacked {
  placement: Placement;
  target: Box;
  /** Prediction over `target`, in volume orientation and scale. */
  values: Array3<Float32Array>;
}

/**
 * Cut each placement of canvas `canvasIndex` out of a one-channel prediction of the canvas:
 * dest → (inverse resize with resizeLinear to the source shape where resized) → cropped to
 * the target.
 */
export function unpackCanvas(packing: Packing, canvasIndex: number, prediction: Array3<Float32Array>): Unpacked[] {
  if (!sameShape(prediction.shape, packing.canvasShape)) {
    throw new RangeError(`unpackCanvas: prediction ${prediction.shape.join('x')} does not match canvas ${packing.canvasShape.join('x')}`);
  }
  const out: Unpacked[] = [];
  for (const p of packing.placements) {
    if (p.canvas !== canvasIndex) continue;
    const cut = crop(prediction, [0, 0, 0], p.dest);
    const sShape = shapeOf(p.source);
    const back = p.resized || !sameShape(sShape, cut.shape) ? resizeLinear(cut, sShape) : cut;
    out.push({ placement: p, target: p.target, values: crop(back, p.source.begin, p.target) });
  }
  return out;
}
