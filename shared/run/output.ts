// The output group: segmentation/0 (uint8 class per voxel, an NGFF label image),
// probabilities/0 (float32, only when asked), boxes.json (two-stage) and run.json.
// run.json is written first with status "running" and rewritten with "complete" only after the
// last chunk landed, so no reader mistakes an interrupted run for a finished one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Vec3 } from '../geometry/box.ts';
import { type VolumeArray, LABEL_COMPRESSOR, createArray, createGroup, openArray, readGroupAttributes } from '../volume/zarr.ts';
import { type RunIdentity, identityDiff } from './identity.ts';
import { createGroupV3, multiscalesAttrs, ngff05 } from '../volume/ome.ts';
import { removeEmptyTemp, writeJsonAtomic } from '../volume/store.ts';
import { createShardedArray } from '../volume/shard.ts';
import { downShape } from '../array/resample.ts';
import { InputError, OutputError } from '../errors.ts';

export interface OutputArrays {
  readonly path: string;
  readonly segmentation: VolumeArray;
  /** uint32 instance ids, one per object across the whole volume (0 = background). */
  readonly instances: VolumeArray;
  readonly probabilities?: VolumeArray;
  /** The segmentation's viewing pyramid: levels 1, 2, … with their factors from level 0 (label mode). */
  readonly segmentationLevels: ReadonlyArray<{ array: VolumeArray; factor: Vec3 }>;
}

export type RunStatus = 'running' | 'complete' | 'failed' | 'interrupted';

export interface RunDocument {
  status: RunStatus;
  [key: string]: unknown;
}

export function runJsonPath(out: string): string {
  return path.join(out, 'run.json');
}

export function readRunJson(out: string): RunDocument | undefined {
  const f = runJsonPath(out);
  if (!fs.existsSync(f)) return undefined;
  return JSON.parse(fs.readFileSync(f, 'utf8')) as RunDocument;
}

export interface CreateOutputOptions {
  shape: Vec3;
  spacing: Vec3;
  unit: string;
  chunks: Vec3;
  classes: string[];
  probabilities: boolean;
  overwrite: boolean;
  /** `zarr-v3-sharded`: shards of `shard` voxels (each written whole by the one task that owns it). */
  format?: 'zarr-v2' | 'zarr-v3-sharded';
  shard?: Vec3;
  /** Factors of the segmentation's pyramid levels 1, 2, … (see pyramidFactors); none by default. */
  levels?: readonly Vec3[];
}

/** Was `out` written by Tessera's run (a run.json with a run identity, or with Tessera's layout attribute)? */
function isTesseraOutput(out: string): RunDocument | undefined {
  try {
    const doc = readRunJson(out);
    if (!doc) return undefined;
    if (doc.identity) return doc;
    const attrs = readGroupAttributes(out) as { tessera?: { layout?: unknown } } | undefined;
    return attrs?.tessera?.layout === undefined ? undefined : doc;
  } catch {
    return undefined;
  }
}

/** Where an output being replaced waits until its replacement completes. */
export function previousPath(out: string): string {
  return `${path.resolve(out)}.previous`;
}

/**
 * Clear the way for a new output at `out`. Only Tessera's own outputs are ever replaced, and only
 * with `overwrite`; a complete one is moved aside (deleted when the new run completes, see
 * finishSession), so a new run that fails never leaves neither. Returns the moved-aside path.
 */
function makeRoom(out: string, overwrite: boolean): string | undefined {
  if (!fs.existsSync(out)) return undefined;
  if (fs.statSync(out).isDirectory() && fs.readdirSync(out).length === 0) {
    fs.rmdirSync(out);
    return undefined;
  }
  const prev = isTesseraOutput(out);
  if (!prev) {
    throw new OutputError(out, 'exists and is not a Tessera output (no run.json and Tessera layout attributes); refusing to replace it, even with --overwrite — remove it yourself or choose another path');
  }
  if (!overwrite) throw new OutputError(out, `holds a ${prev.status} run; pass --overwrite to replace it`);
  const aside = previousPath(out);
  if (prev.status === 'complete' || !fs.existsSync(aside)) {
    fs.rmSync(aside, { recursive: true, force: true });
    fs.renameSync(out, aside);
  } else {
    // An unfinished replacement of what waits at `aside`: that one stays.
    fs.rmSync(out, { recursive: true, force: true });
  }
  return aside;
}

/**
 * An object's id is 1 + the raster index of its first voxel (tasks/merge.ts), so ids reach the
 * volume's voxel count: uint32 while that fits, uint64 beyond (FAFB: 8·10¹⁴ voxels).
 */
export function instanceDtype(shape: Vec3): 'uint32' | 'uint64' {
  return shape[0] * shape[1] * shape[2] <= 0xffffffff ? 'uint32' : 'uint64';
}

export async function createOutput(out: string, o: CreateOutputOptions & { identity?: RunIdentity }): Promise<OutputArrays & { replaces?: string }> {
  const replaces = makeRoom(out, o.overwrite);
  try {
    return await createLayout(out, o, replaces);
  } catch (err) {
    if (fs.existsSync(runJsonPath(out))) await markFailed(out, err);
    throw err;
  }
}

async function createLayout(out: string, o: CreateOutputOptions & { identity?: RunIdentity }, replaces: string | undefined): Promise<OutputArrays & { replaces?: string }> {
  const v3 = o.format === 'zarr-v3-sharded';
  if (v3 && !o.shard) throw new OutputError(out, 'a sharded output needs a shard shape');
  // One place decides the layout: v2 groups with NGFF 0.4 attributes and chunked arrays, or v3
  // groups with NGFF 0.5 (`ome`) attributes and sharded arrays.
  const group = (p: string, attrs: Record<string, unknown>) => (v3 ? createGroupV3(p, ngff05(attrs)) : createGroup(p, attrs));
  const array = (p: string, dtype: 'uint8' | 'uint32' | 'uint64' | 'float32', f: Vec3 = [1, 1, 1]) => (v3
    ? createShardedArray(p, { shape: downShape(o.shape, f), shard: o.shard!.map((v, a) => v / f[a]) as unknown as Vec3, chunks: o.chunks, dtype })
    : createArray(p, { shape: downShape(o.shape, f), chunks: o.chunks, dtype, ...(dtype === 'uint32' || dtype === 'uint64' ? { compressor: LABEL_COMPRESSOR } : {}) }));
  // run.json first, with the identity: an output whose creation stopped half-way (disk full,
  // killed) is then known as Tessera's and resumed, never mistaken for someone else's data.
  await fs.promises.mkdir(out, { recursive: true });
  await writeJsonAtomic(runJsonPath(out), { status: 'running', startedAt: new Date().toISOString(), ...(o.identity ? { identity: o.identity } : {}), ...(replaces ? { replaces } : {}) });
  await group(out, { tessera: { layout: 1 } });
  const levels = o.levels ?? [];
  const labelAttrs = {
    // Level l's voxel j covers level-0 voxels [j·f, (j+1)·f): its centre is shifted by (f − 1) / 2.
    ...multiscalesAttrs('segmentation', o.unit, [[1, 1, 1] as Vec3, ...levels].map((f) => o.spacing.map((s, a) => s * f[a]) as unknown as Vec3), undefined,
      [[1, 1, 1] as Vec3, ...levels].map((f) => o.spacing.map((s, a) => ((f[a] - 1) / 2) * s) as unknown as Vec3)),
    'image-label': {
      version: '0.4',
      colors: o.classes.map((_, i) => ({ 'label-value': i, rgba: i === 0 ? [0, 0, 0, 0] : [255, (i * 97) % 256, (i * 53) % 256, 255] })),
      properties: o.classes.map((name, i) => ({ 'label-value': i, class: name })),
    },
  };
  await group(path.join(out, 'segmentation'), labelAttrs);
  const segmentation = await array(path.join(out, 'segmentation', '0'), 'uint8');
  const segmentationLevels = [];
  for (const [i, f] of levels.entries()) segmentationLevels.push({ array: await array(path.join(out, 'segmentation', String(i + 1)), 'uint8', f), factor: f });
  await group(path.join(out, 'instances'), { ...multiscalesAttrs('instances', o.unit, [o.spacing]), 'image-label': { version: '0.4' } });
  const instances = await array(path.join(out, 'instances', '0'), instanceDtype(o.shape));
  let probabilities: VolumeArray | undefined;
  if (o.probabilities) {
    await group(path.join(out, 'probabilities'), multiscalesAttrs('probabilities', o.unit, [o.spacing]));
    probabilities = await array(path.join(out, 'probabilities', '0'), 'float32');
  }
  return { path: out, segmentation, instances, probabilities, segmentationLevels, replaces };
}

export interface OpenedOutput {
  arrays: OutputArrays;
  /** The run.json of the run this one resumes. */
  resumed?: RunDocument;
}

/**
 * A fresh output, or the same run's earlier output to resume: an output whose run.json records
 * the same identity (config hash and model checksums) is resumed whatever its status; one with
 * a different identity is refused, naming what differs, unless `overwrite`.
 */
export async function openOutput(out: string, o: CreateOutputOptions & { identity: RunIdentity }): Promise<OpenedOutput> {
  const prev = fs.existsSync(out) ? isTesseraOutput(out) : undefined;
  if (prev && !o.overwrite) {
    const before = prev.identity as RunIdentity | undefined;
    if (!before || before.hash !== o.identity.hash) {
      const diff = before ? identityDiff(before, o.identity) : ['(written by a Tessera without run identities)'];
      throw new OutputError(out, `holds a ${prev.status} run with another config, models or input — ${diff.slice(0, 8).join('; ')}${diff.length > 8 ? `; … ${diff.length - 8} more` : ''}; pass --overwrite to replace it`);
    }
    let arrays: OutputArrays;
    try {
      arrays = await openOutputArrays(out, o.probabilities);
    } catch (err) {
      // Its creation never finished (disk full, killed): nothing in it is worth keeping.
      if (prev.status === 'complete') throw err;
      fs.rmSync(out, { recursive: true, force: true });
      const { replaces: _none, ...fresh } = await createOutput(out, { ...o, overwrite: false });
      if (prev.replaces) await updateRunJson(out, { replaces: prev.replaces });
      return { arrays: fresh };
    }
    await writeJsonAtomic(runJsonPath(out), { ...prev, status: 'running', resumedAt: new Date().toISOString() });
    return { arrays, resumed: prev };
  }
  const { replaces: _, ...arrays } = await createOutput(out, o);
  return { arrays };
}

/** The arrays of an existing output (the pyramid levels its segmentation's attributes list). */
export async function openOutputArrays(out: string, probabilities: boolean): Promise<OutputArrays> {
  const segmentation = await openArray(path.join(out, 'segmentation', '0'));
  type Multiscales = Array<{ datasets: Array<{ path: string; coordinateTransformations: Array<{ type: string; scale?: number[] }> }> }>;
  // NGFF 0.4 (v2) keeps multiscales at the top of the attributes, 0.5 (v3) under `ome`.
  const attrs = readGroupAttributes(path.join(out, 'segmentation')) as { multiscales?: Multiscales; ome?: { multiscales?: Multiscales } } | undefined;
  const datasets = (attrs?.multiscales ?? attrs?.ome?.multiscales)?.[0]?.datasets ?? [];
  const scaleOf = (d: (typeof datasets)[number]) => d.coordinateTransformations.find((t) => t.type === 'scale')?.scale ?? [1, 1, 1];
  const segmentationLevels = [];
  for (const d of datasets.slice(1)) {
    const factor = scaleOf(d).map((s, a) => Math.round(s / scaleOf(datasets[0])[a])) as unknown as Vec3;
    segmentationLevels.push({ array: await openArray(path.join(out, 'segmentation', d.path)), factor });
  }
  return {
    path: out,
    segmentation,
    segmentationLevels,
    instances: await openArray(path.join(out, 'instances', '0')),
    probabilities: probabilities ? await openArray(path.join(out, 'probabilities', '0')) : undefined,
  };
}

/**
 * Record a run as failed with its error, whatever the disk's state: atomically if it can, else
 * by rewriting run.json in place (a smaller document fits where a temp copy would not).
 */
export async function markFailed(out: string, err: unknown): Promise<void> {
  const fields = { status: 'failed', error: (err as Error)?.message ?? String(err), finishedAt: new Date().toISOString() };
  try {
    await updateRunJson(out, fields);
  } catch {
    try {
      const prev = readRunJson(out);
      fs.writeFileSync(runJsonPath(out), JSON.stringify({ ...(prev?.identity ? { identity: prev.identity } : {}), ...fields }));
    } catch {
      // Nothing more can be done; the caller reports the error.
    }
  }
}

/** Add fields to the run.json of a running run. */
export async function updateRunJson(out: string, fields: Record<string, unknown>): Promise<void> {
  await writeJsonAtomic(runJsonPath(out), { ...readRunJson(out), ...fields });
}

export async function finishOutput(out: string, doc: Omit<RunDocument, 'status'>, status: RunStatus = 'complete'): Promise<void> {
  await writeJsonAtomic(runJsonPath(out), { status, ...doc, finishedAt: new Date().toISOString() });
  // The temp folder of atomic writes (empty once every writer is done) is not part of the output.
  if (status === 'complete') removeEmptyTemp(out);
}

/** Refuse outputs of runs that did not complete (eval, merger, resume all call this). */
export function requireComplete(out: string): RunDocument {
  const doc = readRunJson(out);
  if (!doc) throw new InputError(out, 'has no run.json: not a Tessera output (or the run never started)');
  if (doc.status !== 'complete') throw new InputError(out, `run status is "${doc.status}": the output is incomplete`);
  return doc;
}
