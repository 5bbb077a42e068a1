// Tissue masks for tests, written as real Zarr: an NGFF group (uint8, level "0" at a voxel size
// `factor` times the input's) or a bare array (uint8, bool or a wrong dtype), tissue where `inside`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { boxOfShape } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import { multiscalesAttrs } from '../../shared/volume/ome.ts';
import { createArray, createGroup, writeRegion } from '../../shared/volume/zarr.ts';

export interface MaskOptions {
  /** Shape of the mask array. */
  shape: Vec3;
  /** Tissue at mask voxel (z, y, x)? */
  inside: (z: number, y: number, x: number) => boolean;
  /** `ngff`: a group with level "0" at `spacing`; else a bare array. */
  kind: 'ngff' | 'array';
  dtype?: 'uint8' | 'bool' | 'float32';
  /** NGFF level 0's voxel size. */
  spacing?: Vec3;
  chunks?: Vec3;
}

function values(o: MaskOptions): Uint8Array {
  const [Z, Y, X] = o.shape;
  const d = new Uint8Array(Z * Y * X);
  for (let z = 0, i = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++, i++) d[i] = o.inside(z, y, x) ? 1 : 0;
  return d;
}

export async function writeMask(file: string, o: MaskOptions): Promise<string> {
  const chunks = o.chunks ?? o.shape;
  const arrayPath = o.kind === 'ngff' ? path.join(file, '0') : file;
  if (o.kind === 'ngff') await createGroup(file, multiscalesAttrs('mask', 'nanometer', [o.spacing ?? [40, 4, 4]], ['0']));
  const dtype = o.dtype ?? 'uint8';
  if (dtype === 'bool') {
    // Zarr v2 bool ("|b1"), raw chunks: one byte per voxel. Written by hand (Tessera writes no bool).
    fs.mkdirSync(arrayPath, { recursive: true });
    fs.writeFileSync(path.join(arrayPath, '.zarray'), JSON.stringify({ zarr_format: 2, shape: o.shape, chunks: o.shape, dtype: '|b1', compressor: null, fill_value: false, order: 'C', filters: null, dimension_separator: '/' }));
    fs.mkdirSync(path.join(arrayPath, '0', '0'), { recursive: true });
    fs.writeFileSync(path.join(arrayPath, '0', '0', '0'), values(o));
    return file;
  }
  const va = await createArray(arrayPath, { shape: o.shape, chunks, dtype });
  const v = values(o);
  const data = dtype === 'float32' ? Float32Array.from(v) : v;
  await writeRegion(va, boxOfShape(o.shape), array3(data, o.shape), { writeFillChunks: true });
  return file;
}
