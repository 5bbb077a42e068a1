// The benchmark's oracle: fragments made from the ground truth instead of stage one (the
// tightest boxes around every true object's part in each chunk, grown like stage-one boxes), so
// stage two + paste-back can be measured against the floor they would reach with a perfect
// stage one. Cells are voxels here: parts of one object in neighbouring chunks touch and are
// joined by the boxes task exactly as stage-one fragments are, and a part's tiles are those its
// voxels (grown by the margin) meet.
import { type Box, type Vec3, box, boxOfShape, grow, intersect, isEmpty } from '../geometry/box.ts';
import { label } from '../array/components.ts';
import { type Fragment, type OwnerChunk, TileSet, byFragment, latticeOf, tileCount, tileRange } from '../pipeline/boxes-fragments.ts';
import { type VolumeArray, readRegion } from '../volume/zarr.ts';
import type { TesseraConfig } from '../config/config.ts';

/** Owners carry full-resolution write boxes here (`low` unused). */
export async function oracleFragments(c: TesseraConfig, gt: VolumeArray, write: Box, owners: ReadonlyArray<OwnerChunk & { write: Box }>, block: Vec3): Promise<Fragment[][]> {
  const vol = boxOfShape(gt.shape);
  const labels = await readRegion(gt, write);
  const { labels: ids } = label(labels.data, labels.shape, 26);
  const parts = new Map<string, { lo: number[]; hi: number[]; n: number; owner: number; region: number; tiles: TileSet }>();
  const [Z, Y, X] = labels.shape;
  const lattice = latticeOf(c.boxes);
  const tileN = tileCount(vol, lattice);
  // Per axis, the tile range of a voxel grown by the margin and clipped to the volume.
  const ranges = [0, 1, 2].map((a) => Array.from({ length: labels.shape[a] }, (_, i) => {
    const p = write.begin[a] + i;
    return tileRange(Math.max(p - c.boxes.margin[a], 0), Math.min(p + 1 + c.boxes.margin[a], vol.end[a]), lattice[a]);
  }));
  for (let z = 0, i = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++, i++) {
    const l = ids[i];
    if (!l) continue;
    const p = [z + write.begin[0], y + write.begin[1], x + write.begin[2]];
    const owner = owners.findIndex((o) => o.write.begin.every((b, a) => p[a] >= b && p[a] < o.write.end[a]));
    const key = `${l}:${owner}`;
    let f = parts.get(key);
    if (!f) { f = { lo: [...p], hi: p.map((v) => v + 1), n: 0, owner, region: l, tiles: new TileSet(tileN) }; parts.set(key, f); }
    f.n++;
    f.tiles.add(ranges[0][z], ranges[1][y], ranges[2][x]);
    for (let a = 0; a < 3; a++) { if (p[a] < f.lo[a]) f.lo[a] = p[a]; if (p[a] + 1 > f.hi[a]) f.hi[a] = p[a] + 1; }
  }
  const out: Fragment[][] = owners.map(() => []);
  for (const f of parts.values()) {
    const cells = box(f.lo as unknown as Vec3, f.hi as unknown as Vec3);
    const grown = intersect(grow(cells, c.boxes.margin), vol);
    if (isEmpty(grown)) continue;
    out[f.owner].push({ chunk: owners[f.owner].index, cells, box: grown, score: f.n, block, region: f.region, tiles: f.tiles.list() });
  }
  return out.map((l) => l.sort(byFragment));
}
