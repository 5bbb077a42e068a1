// Grid packing: the canvas is divided into slots of `slot` shape (floor(canvas / slot) per
// axis; any remainder of the canvas stays empty). Each piece of a box takes one slot.
//
// Per axis, a piece no longer than the slot is placed unresized and its source is grown
// around it to the slot length (shifted into `bounds` where possible): the network sees real
// context instead of padding, and only the piece itself is the target. A piece longer than
// the slot is resized down to the slot length along that axis (other axes keep scale 1).
//
// Pieces per postprocess:
// - 'resize': the whole box is one piece (resized where it exceeds the slot).
// - 'crop_and_resize': along each axis longer than cropThreshold the box is split into the
//   fewest pieces of exactly cropThreshold, spread evenly (overlapping, as nnU-Net's sliding
//   window); each piece is then resized to the slot where it exceeds it (so with
//   cropThreshold = slot nothing is ever resized). Pieces' targets split the overlaps at their
//   middles, so targets partition the box: every box voxel is predicted exactly once.
//
// Slot packing (shared with jigsaw): items are placed first-fit over canvases in order,
// slots in raster order; with maxPerCanvas only the first maxPerCanvas slots (raster order)
// of each canvas are used.
import { type Vec3, box } from '../geometry/box.ts';
import type { Candidate } from './boxes.ts';
import {
  type PackOptions, type Placement, type Span, contextAxis, prod, product3, splitAxis, vec,
} from './pack-common.ts';

export interface SlotItem {
  /** Extent in slots along each axis. */
  readonly slots: Vec3;
  /** Placements for this item put at canvas `canvas`, voxel `origin` (a slot corner). */
  emit(canvas: number, origin: Vec3): Placement[];
}

/** One slot-sized placement of one piece (see the header for the per-axis rule). */
export function pieceItem(boxId: number, spans: readonly [Span, Span, Span], o: PackOptions): SlotItem {
  const src: Array<[number, number]> = [];
  const destShape: number[] = [];
  let resized = false;
  for (let a = 0; a < 3; a++) {
    const { lo, hi } = spans[a];
    const s = o.slot[a];
    if (hi - lo <= s) {
      const r = contextAxis(lo, hi, s, o.bounds?.begin[a], o.bounds?.end[a]);
      src.push(r);
      destShape.push(r[1] - r[0]);
    } else {
      src.push([lo, hi]);
      destShape.push(s);
      resized = true;
    }
  }
  const source = box(vec((a) => src[a][0]), vec((a) => src[a][1]));
  const target = box(vec((a) => spans[a].tlo), vec((a) => spans[a].thi));
  return {
    slots: [1, 1, 1],
    emit: (canvas, origin) => [{
      boxId,
      canvas,
      source,
      dest: box(origin, vec((a) => origin[a] + destShape[a])),
      resized,
      target,
    }],
  };
}

/** The pieces of one box for grid packing, each one slot. */
export function gridItems(c: Candidate, o: PackOptions): SlotItem[] {
  const axes = [0, 1, 2].map((a): Span[] => {
    const lo = c.box.begin[a], hi = c.box.end[a];
    return o.postprocess === 'resize' ? [{ lo, hi, tlo: lo, thi: hi }] : splitAxis(lo, hi, o.cropThreshold[a]);
  });
  return product3([axes[0], axes[1], axes[2]]).map((spans) => pieceItem(c.id, spans, o));
}

export interface SlotGrid {
  /** Slots per canvas along each axis. */
  readonly g: Vec3;
  /** 1 for the slots (raster index) a canvas may use. */
  readonly usable: Uint8Array;
  /** Largest block of slots at the canvas origin made only of usable slots. */
  readonly maxBlock: Vec3;
}

export function slotGrid(o: PackOptions): SlotGrid {
  const g = vec((a) => Math.floor(o.canvas[a] / o.slot[a]));
  const n = prod(g);
  const m = Math.min(n, o.maxPerCanvas ?? n);
  const usable = new Uint8Array(n);
  usable.fill(1, 0, m);
  const layer = g[1] * g[2];
  let maxBlock: Vec3;
  if (m >= layer) maxBlock = [Math.floor(m / layer), g[1], g[2]];
  else if (m >= g[2]) maxBlock = [1, Math.floor(m / g[2]), g[2]];
  else maxBlock = [1, 1, m];
  return { g, usable, maxBlock };
}

/**
 * Place slot items first-fit (see header). `decreasing`: items with more slots go first
 * (stable otherwise), which keeps big jigsaw blocks from being stranded.
 */
export function packSlots(items: readonly SlotItem[], o: PackOptions, decreasing: boolean): { canvases: number; placements: Placement[] } {
  const { g, usable } = slotGrid(o);
  const n = prod(g);
  const order = items.map((it, i) => ({ it, i }));
  if (decreasing) order.sort((a, b) => prod(b.it.slots) - prod(a.it.slots) || a.i - b.i);
  const occupied: Uint8Array[] = [];
  const free: number[] = [];
  const capacity = usable.reduce((s, v) => s + v, 0);
  const placements: Placement[] = [];
  let firstOpen = 0;
  const tryPlace = (c: number, k: Vec3): Vec3 | undefined => {
    const occ = occupied[c];
    for (let z = 0; z + k[0] <= g[0]; z++) {
      for (let y = 0; y + k[1] <= g[1]; y++) {
        for (let x = 0; x + k[2] <= g[2]; x++) {
          let ok = true;
          for (let dz = 0; ok && dz < k[0]; dz++) {
            for (let dy = 0; ok && dy < k[1]; dy++) {
              for (let dx = 0; ok && dx < k[2]; dx++) {
                const s = ((z + dz) * g[1] + y + dy) * g[2] + x + dx;
                if (!usable[s] || occ[s]) ok = false;
              }
            }
          }
          if (!ok) continue;
          for (let dz = 0; dz < k[0]; dz++) {
            for (let dy = 0; dy < k[1]; dy++) occ.fill(1, ((z + dz) * g[1] + y + dy) * g[2] + x, ((z + dz) * g[1] + y + dy) * g[2] + x + k[2]);
          }
          free[c] -= prod(k);
          return [z, y, x];
        }
      }
    }
    return undefined;
  };
  for (const { it } of order) {
    const k = it.slots;
    let placed = false;
    for (let c = firstOpen; c <= occupied.length && !placed; c++) {
      if (c === occupied.length) {
        occupied.push(new Uint8Array(n));
        free.push(capacity);
      }
      if (free[c] < prod(k)) continue;
      const at = tryPlace(c, k);
      if (!at) {
        if (c === occupied.length - 1 && free[c] === capacity) {
          throw new RangeError(`pack: an item of ${k.join('x')} slots does not fit an empty canvas`);
        }
        continue;
      }
      placements.push(...it.emit(c, vec((a) => at[a] * o.slot[a])));
      placed = true;
    }
    while (firstOpen < occupied.length && free[firstOpen] === 0) firstOpen++;
  }
  return { canvases: occupied.length, placements };
}
