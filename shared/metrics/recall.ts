// Stage one's recall: how many ground-truth objects the boxes stage two ran on hold. A missed
// object is lost for good (stage two never sees it), so this bounds what two-stage can reach,
// whatever the networks; scored with labels by `tessera eval`, and in the benchmark.
import type { Box } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { label } from '../array/components.ts';

export interface BoxRecall {
  /** found / objects (1 when there is no object). */
  recall: number;
  /** Ground-truth objects: 26-connected components of nonzero voxels. */
  objects: number;
  /** Objects with at least `within` of their voxels inside the boxes. */
  found: number;
}

/**
 * The share of ground-truth objects (26-connected components of `gt`'s nonzero voxels) with at
 * least `within` of their voxels inside the union of `boxes` (in `gt`'s own coordinates; parts
 * outside `gt` are ignored).
 */
export function boxRecall(gt: Array3, boxes: readonly Box[], within = 0.9): BoxRecall {
  const [Z, Y, X] = gt.shape;
  const covered = new Uint8Array(gt.data.length);
  for (const t of boxes) {
    const x0 = Math.max(0, t.begin[2]), x1 = Math.min(X, t.end[2]);
    if (x0 >= x1) continue;
    for (let z = Math.max(0, t.begin[0]); z < Math.min(Z, t.end[0]); z++) {
      for (let y = Math.max(0, t.begin[1]); y < Math.min(Y, t.end[1]); y++) covered.fill(1, (z * Y + y) * X + x0, (z * Y + y) * X + x1);
    }
  }
  const fg = new Uint8Array(gt.data.length);
  for (let i = 0; i < fg.length; i++) if (gt.data[i]) fg[i] = 1;
  const { labels, count } = label(fg, gt.shape, 26);
  const total = new Float64Array(count + 1);
  const inside = new Float64Array(count + 1);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!l) continue;
    total[l]++;
    if (covered[i]) inside[l]++;
  }
  let found = 0;
  for (let l = 1; l <= count; l++) if (inside[l] >= within * total[l]) found++;
  return { recall: count ? found / count : 1, objects: count, found };
}
