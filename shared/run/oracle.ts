// The benchmark's oracle: fragments made from the ground truth instead of stage one (the
// tightest boxes around every true object's part in each stage-one block, grown like stage-one
// boxes), so stage two + paste-back can be measured against the floor they would reach with a
// perfect stage one. Cells are voxels here: a part is a 26-connected component of the block's
// foreground, named like a stage-one fragment (1 + the raster index of its first voxel), with a
// border that joins it to its parts in neighbouring blocks exactly as stage one's fragments are
// joined; a part's tiles are those its voxels (grown by the margin) meet.
import { type Box, type Vec3, box, boxOfShape, grow, intersect, shapeOf } from '../geometry/box.ts';
import { label } from '../array/components.ts';
import { type BlockFragments, type Fragment, TileSet, latticeOf, tileCount, tileRange } from '../pipeline/boxes-fragments.ts';
import { borderSections } from '../pipeline/border.ts';
import { type VolumeArray, readRegion } from '../volume/zarr.ts';
import type { TesseraConfig } from '../config/config.ts';

export async function oracleFragments(c: TesseraConfig, gt: VolumeArray, write: Box, block: Vec3): Promise<BlockFragments> {
  const vol = boxOfShape(gt.shape);
  const gtBlock = await readRegion(gt, write);
  const shape = shapeOf(write);
  const mask = new Uint8Array(gtBlock.data.length);
  for (let i = 0; i < mask.length; i++) if (gtBlock.data[i]) mask[i] = 1;
  const { labels, count } = label(mask, shape, 26);
  const lattice = latticeOf(c.boxes);
  const tileN = tileCount(vol, lattice);
  // Per axis, the tile range of a voxel grown by the margin and clipped to the volume.
  const ranges = [0, 1, 2].map((a) => Array.from({ length: shape[a] }, (_, i) => {
    const p = write.begin[a] + i;
    return tileRange(Math.max(p - c.boxes.margin[a], 0), Math.min(p + 1 + c.boxes.margin[a], vol.end[a]), lattice[a]);
  }));
  const ids = new Float64Array(count + 1);
  const lo = Array.from({ length: count + 1 }, () => [Infinity, Infinity, Infinity]);
  const hi = Array.from({ length: count + 1 }, () => [-Infinity, -Infinity, -Infinity]);
  const n = new Float64Array(count + 1);
  const tiles = Array.from({ length: count + 1 }, () => new TileSet(tileN));
  const [Z, Y, X] = shape;
  for (let z = 0, i = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++, i++) {
    const l = labels[i];
    if (!l) continue;
    const p = [z + write.begin[0], y + write.begin[1], x + write.begin[2]];
    if (ids[l] === 0) ids[l] = (p[0] * vol.end[1] + p[1]) * vol.end[2] + p[2] + 1;
    n[l]++;
    tiles[l].add(ranges[0][z], ranges[1][y], ranges[2][x]);
    for (let a = 0; a < 3; a++) { if (p[a] < lo[l][a]) lo[l][a] = p[a]; if (p[a] + 1 > hi[l][a]) hi[l][a] = p[a] + 1; }
  }
  const fragments: Fragment[] = [];
  for (let l = 1; l <= count; l++) {
    const cells = box(lo[l] as unknown as Vec3, hi[l] as unknown as Vec3);
    fragments.push({ id: ids[l], block, cells, box: intersect(grow(cells, c.boxes.margin), vol), score: n[l], tiles: tiles[l].list() });
  }
  const border = borderSections(new Uint32Array(labels.buffer, labels.byteOffset, labels.length), ids, mask, shape);
  return { fragments: fragments.sort((a, b) => a.id - b.id), border };
}
