// The benchmark's oracle: boxes made from the ground truth instead of stage one (the tightest
// boxes around every true object, grown like stage-one boxes), so stage two + paste-back can
// be measured against the floor they would reach with a perfect stage one.
import { type Box, box, boxOfShape, grow, growTo, intersect, isEmpty } from '../geometry/box.ts';
import type { Chunk } from '../geometry/grid.ts';
import { label } from '../array/components.ts';
import type { Candidate } from '../pipeline/boxes.ts';
import { type VolumeArray, readRegion } from '../volume/zarr.ts';
import type { RunContext } from './context.ts';

export async function oracleBoxes(ctx: RunContext, gt: VolumeArray, chunk: Chunk): Promise<Candidate[]> {
  const c = ctx.config;
  const around = intersect(grow(chunk.writeBox, c.pack.crop), boxOfShape(gt.shape));
  const labels = await readRegion(gt, around);
  const { labels: ids, count } = label(labels.data, labels.shape, 26);
  const lo = Array.from({ length: count + 1 }, () => [Infinity, Infinity, Infinity]);
  const hi = Array.from({ length: count + 1 }, () => [-Infinity, -Infinity, -Infinity]);
  const size = new Float64Array(count + 1);
  const [Z, Y, X] = labels.shape;
  for (let z = 0, i = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++, i++) {
    const l = ids[i];
    if (!l) continue;
    size[l]++;
    const p = [z, y, x];
    for (let a = 0; a < 3; a++) { if (p[a] < lo[l][a]) lo[l][a] = p[a]; if (p[a] + 1 > hi[l][a]) hi[l][a] = p[a] + 1; }
  }
  const out: Candidate[] = [];
  for (let l = 1; l <= count; l++) {
    const b: Box = box(
      [lo[l][0] + around.begin[0], lo[l][1] + around.begin[1], lo[l][2] + around.begin[2]],
      [hi[l][0] + around.begin[0], hi[l][1] + around.begin[1], hi[l][2] + around.begin[2]],
    );
    if (isEmpty(intersect(b, chunk.writeBox))) continue;
    const grown = growTo(intersect(grow(b, c.boxes.margin), ctx.roi), c.pack.crop, ctx.roi);
    out.push({ id: out.length, box: grown, score: size[l], role: 'parent' });
  }
  return out;
}
