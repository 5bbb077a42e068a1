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
import { type Box, type Vec3, isEmpty, shapeOf } from '../geometry/box.ts';
import { type Array3, copyRegion, crop, zeros } from '../array/array3.ts';
import { resizeLinear } from '../array/resample.ts';
import type { Candidate } from './boxes.ts';
import { type PackOptions, type Packing, type Placement, finishPacking, validatePackOptions } from './pack-common.ts';
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

function sameShape(a: Vec3, b: Vec3): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

/**
 * Build canvas `canvasIndex`: `fill` everywhere, then each placement's source (read from the
 * volume by `read`, which must return an array of the source's shape, padding outside the
 * volume) written at its dest, resized with resizeLinear where the placement is resized.
 */
export function assembleCanvas(
  packing: Packing, canvasIndex: number, read: (source: Box) => Array3<Float32Array>, fill: number,
): Array3<Float32Array> {
  const canvas = zeros(packing.canvasShape);
  if (fill !== 0) canvas.data.fill(fill);
  for (const p of packing.placements) {
    if (p.canvas !== canvasIndex) continue;
    const src = read(p.source);
    const sShape = shapeOf(p.source);
    if (!sameShape(src.shape, sShape)) {
      throw new RangeError(`assembleCanvas: read returned ${src.shape.join('x')} for source of ${sShape.join('x')}`);
    }
    const dShape = shapeOf(p.dest);
    const content = p.resized || !sameShape(sShape, dShape) ? resizeLinear(src, dShape) : src;
    copyRegion(content, p.dest.begin, canvas, [0, 0, 0], p.dest);
  }
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
