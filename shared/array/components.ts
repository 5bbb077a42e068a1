// 3D connected-component labelling of a binary mask (two-pass union-find, deterministic:
// labels are numbered 1..count in raster order of each component's first voxel).
import type { Vec3 } from '../geometry/box.ts';

export type Connectivity = 6 | 18 | 26;

export interface Components {
  /** 0 = background, 1..count = component ids. */
  readonly labels: Int32Array;
  readonly count: number;
}

function neighbourOffsets(connectivity: Connectivity): Vec3[] {
  // Only "earlier" neighbours in raster order: those already visited by the first pass.
  const out: Vec3[] = [];
  for (let dz = -1; dz <= 0; dz++) {
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        if (dz === 0 && (dy > 0 || (dy === 0 && dx >= 0))) continue;
        const n = Math.abs(dz) + Math.abs(dy) + Math.abs(dx);
        if (connectivity === 6 && n > 1) continue;
        if (connectivity === 18 && n > 2) continue;
        out.push([dz, dy, dx]);
      }
    }
  }
  return out;
}

export function label(mask: ArrayLike<number>, shape: Vec3, connectivity: Connectivity = 26): Components {
  const [Z, Y, X] = shape;
  const n = Z * Y * X;
  const labels = new Int32Array(n);
  const parent: number[] = [0];
  const find = (a: number): number => {
    while (parent[a] !== a) {
      parent[a] = parent[parent[a]];
      a = parent[a];
    }
    return a;
  };
  const offs = neighbourOffsets(connectivity);
  let next = 1;
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      for (let x = 0; x < X; x++) {
        const i = (z * Y + y) * X + x;
        if (!mask[i]) continue;
        let cur = 0;
        for (const [dz, dy, dx] of offs) {
          const zz = z + dz, yy = y + dy, xx = x + dx;
          if (zz < 0 || yy < 0 || yy >= Y || xx < 0 || xx >= X) continue;
          const l = labels[(zz * Y + yy) * X + xx];
          if (l === 0) continue;
          if (cur === 0) cur = find(l);
          else {
            const a = find(l);
            if (a !== cur) {
              // Keep the smaller root so the final numbering is raster-ordered.
              if (a < cur) { parent[cur] = a; cur = a; } else parent[a] = cur;
            }
          }
        }
        if (cur === 0) {
          cur = next++;
          parent.push(cur);
        }
        labels[i] = cur;
      }
    }
  }
  const remap = new Int32Array(next);
  let count = 0;
  for (let l = 1; l < next; l++) {
    const r = find(l);
    if (r === l) remap[l] = ++count;
  }
  for (let l = 1; l < next; l++) remap[l] = remap[find(l)];
  for (let i = 0; i < n; i++) if (labels[i]) labels[i] = remap[labels[i]];
  return { labels, count };
}
