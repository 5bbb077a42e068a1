// `tessera convert`: the files CT and MRI users hold, in and out.
//
// - NIfTI (.nii, .nii.gz) → an OME-Zarr image (NGFF 0.4, Zarr v2) with the pyramid a run reads
//   (levels at [1, 2, 2] steps), the voxel size and unit from the header, and the header itself
//   kept in the group's attributes (tessera.nifti) so labels can go back in the image's space.
// - A TIFF stack (multi-page .tif, or a folder of sections) → the same, its voxel size from
//   ImageJ's metadata or --spacing.
// - Labels (a Tessera output, a label image or a bare uint8 array) → NIfTI-1 on the header of
//   the image they segment: `--like IMAGE.nii.gz`, else the header the converted input kept.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Vec3, boxOfShape } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { downsampleMean } from '../array/resample.ts';
import { createArray, createGroup, openArray, readGroupAttributes, readRegion, writeRegion } from '../volume/zarr.ts';
import { isArrayNode, multiscalesAttrs } from '../volume/ome.ts';
import { type NiftiVolume, isNiftiPath, niftiUnit, readNifti, writeNiftiLabels } from '../volume/nifti.ts';
import { dtypeOf } from '../volume/dtype.ts';
import { isTiffPath, readTiffStack } from '../volume/tiff.ts';
import { InputError, OutputError } from '../errors.ts';
import { readRunJson } from './output.ts';

export interface ConvertOptions {
  input: string;
  output: string;
  /** Replace an existing Zarr output (removed first). */
  overwrite?: boolean;
  /** Storage chunk of the Zarr image. @default [32, 128, 128] */
  chunks?: Vec3;
  /** Labels → NIfTI: the image whose header the labels take. */
  like?: string;
  /** Voxel size [z, y, x] (TIFF stacks that do not say theirs; overrides a NIfTI header's). */
  spacing?: Vec3;
  /** Unit of `spacing` (an NGFF unit name). @default the file's, else micrometer for TIFF */
  unit?: string;
}

export interface ConvertResult {
  output: string;
  shape: Vec3;
  spacing: Vec3;
  unit: string;
  levels: number;
}

const STEP: Vec3 = [1, 2, 2];
const LEVELS = 3;

export async function convert(o: ConvertOptions): Promise<ConvertResult> {
  if (isNiftiPath(o.input)) {
    const v = readNifti(o.input);
    const nifti = { source: path.resolve(o.input), header: Buffer.from(v.header).toString('base64'), littleEndian: v.littleEndian };
    return toZarr(o, { ...v, spacing: o.spacing ?? v.spacing }, { nifti });
  }
  if (isTiffPath(o.input)) {
    const t = readTiffStack(o.input);
    const spacing = o.spacing ?? t.spacing;
    if (!spacing) throw new InputError(o.input, 'the TIFF files do not say their voxel size (no ImageJ spacing and resolution): pass --spacing Z,Y,X (and --unit)');
    return toZarr(o, { ...t, spacing, unit: o.unit ?? t.unit }, { tiff: { source: path.resolve(o.input) } });
  }
  if (isNiftiPath(o.output)) return labelsToNifti(o);
  throw new InputError(o.input, `convert reads NIfTI (.nii, .nii.gz) or a TIFF stack (a multi-page .tif, or a folder of .tif sections) into a Zarr image, or writes labels to NIfTI (got ${o.input} → ${o.output})`);
}

interface Volume {
  shape: Vec3;
  spacing: Vec3;
  unit: string;
  data: Uint8Array | Uint16Array | Float32Array;
}

/** The image as an NGFF group with the run's pyramid; `source` (what it came from) kept under `tessera`. */
async function toZarr(o: ConvertOptions, v: Volume, source: Record<string, unknown>): Promise<ConvertResult> {
  prepareOutput(o);
  let level: Array3 = array3(v.data, v.shape);
  const spacings: Vec3[] = [];
  const arrays = [];
  const chunks = o.chunks ?? [32, 128, 128];
  await createGroup(o.output, {});
  for (let k = 0; k < LEVELS; k++) {
    spacings.push(v.spacing.map((s, a) => s * STEP[a] ** k) as unknown as Vec3);
    const shape = level.shape as Vec3;
    const arr = await createArray(path.join(o.output, String(k)), { shape, chunks: chunks.map((c, a) => Math.min(c, shape[a])) as unknown as Vec3, dtype: dtypeOf(level.data) });
    await writeRegion(arr, boxOfShape(shape), level, { writeFillChunks: true });
    arrays.push(arr);
    if (k + 1 < LEVELS) level = nextLevel(level);
  }
  await createGroup(o.output, {
    ...multiscalesAttrs(path.basename(o.input).replace(/\.nii(\.gz)?$/i, ''), v.unit, spacings),
    tessera: source,
  });
  return { output: o.output, shape: v.shape, spacing: v.spacing, unit: v.unit, levels: LEVELS };
}

/** The area mean of each [1, 2, 2] block: integers rounded, floats kept (CT in HU, MRI intensities). */
function nextLevel(a: Array3): Array3 {
  const mean = downsampleMean(a, STEP);
  if (a.data instanceof Float32Array) return mean;
  const out = new (a.data.constructor as Uint8ArrayConstructor)(mean.data.length);
  for (let i = 0; i < mean.data.length; i++) out[i] = Math.round(mean.data[i]);
  return array3(out, mean.shape);
}

/** A Zarr output is created fresh: refused when something is there, unless --overwrite and it is a Zarr. */
function prepareOutput(o: ConvertOptions): void {
  if (!fs.existsSync(o.output)) return;
  const zarr = ['.zgroup', '.zarray', 'zarr.json'].some((f) => fs.existsSync(path.join(o.output, f)));
  if (!o.overwrite) throw new OutputError(o.output, 'exists; pass --overwrite to replace it');
  if (!zarr) throw new OutputError(o.output, 'exists and is not a Zarr group or array; refusing to replace it, even with --overwrite');
  fs.rmSync(o.output, { recursive: true, force: true });
}

async function labelsToNifti(o: ConvertOptions): Promise<ConvertResult> {
  if (fs.existsSync(o.output) && !o.overwrite) throw new OutputError(o.output, 'exists; pass --overwrite to replace it');
  const arrayPath = labelArray(o.input);
  const arr = await openArray(arrayPath);
  if (arr.dtype !== 'uint8') throw new InputError(arrayPath, `labels must be uint8 class ids, not ${arr.dtype}`);
  const like = likeHeader(o);
  const shape = arr.shape as unknown as Vec3;
  const labels = (await readRegion(arr, boxOfShape(shape))).data as Uint8Array;
  await writeNiftiLabels(o.output, labels, shape, like);
  return { output: o.output, shape, spacing: like.spacing, unit: like.unit, levels: 1 };
}

/** The label array to write: a Tessera output's segmentation, a label image's level 0, or the array itself. */
function labelArray(p: string): string {
  if (!fs.existsSync(p)) throw new InputError(p, 'no such file or directory');
  if (isArrayNode(p)) return p;
  if (readRunJson(p)) return path.join(p, 'segmentation', '0');
  if (fs.existsSync(path.join(p, '0'))) return path.join(p, '0');
  throw new InputError(p, 'is neither a Tessera output, a label image with a level "0", nor a Zarr array');
}

/** The header the labels take: --like's, else the one the converted input (or the output's input) kept. */
function likeHeader(o: ConvertOptions): Pick<NiftiVolume, 'header' | 'littleEndian' | 'shape' | 'spacing' | 'unit'> {
  if (o.like) return readNifti(o.like);
  const run = readRunJson(o.input);
  const group = typeof run?.input === 'string' ? run.input : o.input;
  const kept = (readGroupAttributes(group)?.tessera as { nifti?: { header: string; littleEndian: boolean } } | undefined)?.nifti;
  if (!kept) throw new InputError(o.input, 'no NIfTI header to write the labels on: pass --like IMAGE.nii.gz (the image they segment)');
  const header = new Uint8Array(Buffer.from(kept.header, 'base64'));
  const v = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const le = kept.littleEndian;
  const dim = (i: number) => v.getInt16(40 + 2 * i, le);
  const pix = (i: number) => v.getFloat32(76 + 4 * i, le);
  return { header, littleEndian: le, shape: [dim(3), dim(2), dim(1)], spacing: [pix(3), pix(2), pix(1)], unit: niftiUnit(v.getUint8(123)) };
}
