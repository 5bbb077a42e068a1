// NIfTI (.nii, .nii.gz), the format CT and MRI users hold their volumes in: read with
// nifti-reader-js (maintained, NIfTI-1 and -2, either byte order, gzip), written back as NIfTI-1
// label volumes on the header of the image they segment (no maintained npm writer exists; the
// label file is the source's header with the voxel type, scaling and offset replaced).
//
// Axes: NIfTI stores i fastest, then j, then k, with voxel sizes pixdim[1..3]; a Zarr array here
// is z, y, x with x fastest — the same bytes in the same order, so shape and spacing are the
// reversed dims and pixdims, and no voxel moves. The orientation (qform/sform) stays in the
// header, which the converted group keeps, so labels go back in the image's own space.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import type { Vec3 } from '../geometry/box.ts';
import { InputError, OutputError } from '../errors.ts';
import { writeFileAtomic } from './store.ts';

export interface NiftiVolume {
  shape: Vec3;
  spacing: Vec3;
  unit: string;
  /** Voxels as stored (uint8, uint16), or float32 for every other type and for scaled data. */
  data: Uint8Array | Uint16Array | Float32Array;
  /** The header as it was (NIfTI-1: 348 bytes, file byte order): the labels' header is made from it. */
  header: Uint8Array;
  littleEndian: boolean;
}

const UNITS: Record<number, string> = { 1: 'meter', 2: 'millimeter', 3: 'micrometer' };

/** The NGFF unit of a NIfTI xyzt_units code; unknown spatial units are millimetres (what NIfTI readers assume and CT scanners write). */
export function niftiUnit(xyztUnits: number): string {
  return UNITS[xyztUnits & 7] ?? 'millimeter';
}

/** Read a whole NIfTI volume (3D, or 4D with one volume). */
export function readNifti(file: string): NiftiVolume {
  if (!fs.existsSync(file)) throw new InputError(file, 'no such file');
  const raw = fs.readFileSync(file);
  let buf: ArrayBuffer = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  if (nifti.isCompressed(buf)) buf = zlib.gunzipSync(raw).buffer as ArrayBuffer;
  if (!nifti.isNIFTI(buf)) throw new InputError(file, 'is not a NIfTI-1 or NIfTI-2 file (no NIfTI magic; .hdr/.img pairs are not read)');
  const h = nifti.readHeader(buf);
  const [nd, nx, ny, nz, nt = 1] = h.dims;
  if (nd < 3 || nd > 4 || (nd === 4 && nt > 1)) throw new InputError(file, `has ${nd} dimensions (${h.dims.slice(1, nd + 1).join('×')}): a 3D volume is needed`);
  const shape: Vec3 = [nz, ny, nx];
  const spacing: Vec3 = [h.pixDims[3], h.pixDims[2], h.pixDims[1]];
  if (!spacing.every((s) => s > 0 && Number.isFinite(s))) throw new InputError(file, `voxel size ${spacing.join('×')} (pixdim) is not positive`);
  const image = voxels(file, h.datatypeCode, nifti.readImage(h, buf), h.littleEndian, nx * ny * nz);
  const slope = h.scl_slope;
  const scaled = slope !== 0 && Number.isFinite(slope) && (slope !== 1 || h.scl_inter !== 0);
  let data: NiftiVolume['data'];
  if (!scaled && (image instanceof Uint8Array || image instanceof Uint16Array)) data = image;
  else {
    data = new Float32Array(image.length);
    const [a, b] = scaled ? [slope, h.scl_inter] : [1, 0];
    for (let i = 0; i < image.length; i++) data[i] = a * image[i] + b;
  }
  const headerBytes = new Uint8Array(buf.slice(0, h instanceof nifti.NIFTI1 ? 348 : 540));
  return { shape, spacing, unit: niftiUnit(h.xyzt_units), data, header: headerBytes, littleEndian: h.littleEndian };
}

type Voxels = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

/** The image bytes as a typed array in this machine's order. */
function voxels(file: string, code: number, bytes: ArrayBuffer, little: boolean, n: number): Voxels {
  const T = nifti.NIFTI1;
  const ctor = {
    [T.TYPE_UINT8]: Uint8Array, [T.TYPE_INT8]: Int8Array, [T.TYPE_UINT16]: Uint16Array, [T.TYPE_INT16]: Int16Array,
    [T.TYPE_UINT32]: Uint32Array, [T.TYPE_INT32]: Int32Array, [T.TYPE_FLOAT32]: Float32Array, [T.TYPE_FLOAT64]: Float64Array,
  }[code];
  if (!ctor) throw new InputError(file, `NIfTI datatype ${code} is not a scalar voxel type Tessera reads (uint8–32, int8–32, float32/64)`);
  const size = ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength < n * size) throw new InputError(file, `holds ${bytes.byteLength} bytes of voxels, ${n * size} expected (truncated?)`);
  const copy = new Uint8Array(bytes.slice(0, n * size));
  // This machine is little-endian (x64, arm64): a big-endian file's values are byte-swapped.
  if (!little && size > 1) for (let i = 0; i < copy.length; i += size) copy.subarray(i, i + size).reverse();
  return new ctor(copy.buffer);
}

/**
 * Write uint8 labels as NIfTI-1 on `like`'s header (same dims, voxel size, orientation and units):
 * datatype uint8, no scaling, data right after the header. `.gz` → gzip.
 */
export async function writeNiftiLabels(file: string, labels: Uint8Array, shape: Vec3, like: Pick<NiftiVolume, 'header' | 'littleEndian' | 'shape'>): Promise<void> {
  if (like.header.length !== 348) throw new OutputError(file, 'labels are written on a NIfTI-1 header; the image is NIfTI-2');
  if (shape.some((v, a) => v !== like.shape[a])) throw new OutputError(file, `labels of shape ${shape.join('x')} do not match the image's ${like.shape.join('x')}`);
  const out = new Uint8Array(352 + labels.length);
  out.set(like.header, 0);
  const v = new DataView(out.buffer);
  const le = like.littleEndian;
  v.setInt16(70, nifti.NIFTI1.TYPE_UINT8, le); // datatype
  v.setInt16(72, 8, le); // bitpix
  v.setFloat32(108, 352, le); // vox_offset: the header and an empty extension flag
  v.setFloat32(112, 1, le); // scl_slope
  v.setFloat32(116, 0, le); // scl_inter
  let max = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i];
  v.setFloat32(124, max, le); // cal_max
  v.setFloat32(128, 0, le); // cal_min
  out.set([0x6e, 0x2b, 0x31, 0x00], 344); // magic "n+1": header and data in one file
  out.fill(0, 348, 352); // no extensions
  out.set(labels, 352);
  await writeFileAtomic(file, file.endsWith('.gz') ? zlib.gzipSync(out) : out);
}

export function isNiftiPath(p: string): boolean {
  return /\.nii(\.gz)?$/i.test(p);
}
