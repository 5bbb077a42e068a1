// Flags shared by the commands that start a run (`run`, `coordinator`): parsing helpers, the
// config built from flags, and signals (progress: progress.ts).
import { type Command, InvalidArgumentError } from 'commander';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
// Direct, light modules only (not the library's index): every command's flags are declared at
// start-up, and `tessera --help` must not load ONNX Runtime, NATS or Zarr.
import { type Box, type Vec3, parseBox } from '../../shared/geometry/box.ts';
import type { TesseraConfig } from '../../shared/config/config.ts';
import { PRESET_NAMES } from '../../shared/config/presets.ts';
import { loadConfig } from '../../shared/config/load.ts';

export function vec3Arg(name: string) {
  return (v: string): Vec3 => {
    const p = v.split(',').map(Number);
    if (p.length !== 3 || !p.every((x) => Number.isInteger(x) && x > 0)) throw new InvalidArgumentError(`${name} must be Z,Y,X positive integers`);
    return p as unknown as Vec3;
  };
}

/** Z,Y,X positive numbers (spacings: 0.8 mm, 40 nm). */
export function spacingArg(name: string) {
  return (v: string): Vec3 => {
    const p = v.split(',').map(Number);
    if (p.length !== 3 || !p.every((x) => Number.isFinite(x) && x > 0)) throw new InvalidArgumentError(`${name} must be Z,Y,X positive numbers`);
    return p as unknown as Vec3;
  };
}

export function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be an integer');
  return n;
}

export function positiveIntArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

/** A repeatable --roi: each value parsed and appended. */
export function roiListArg(v: string, prev: Box[] = []): Box[] {
  const roi = parseBox(v);
  if (!roi) throw new InvalidArgumentError(`--roi "${v}" must look like Z0:Z1,Y0:Y1,X0:X1`);
  return [...prev, roi];
}

/** A number in [0, 1) (a loss of Dice). */
export function fractionArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError(`${name} must be a number in [0, 1)`);
    return n;
  };
}

export function speedupArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('--min-speedup must be a number > 0');
  return n;
}

/** The flags that say what to run: input, output, config and its overrides, ROI. */
export function runFlags(cmd: Command): Command {
  return cmd
    .requiredOption('--input <vol.zarr>', "input image (NGFF multiscale group or 3D array): a path, a URL (https://…, s3://bucket/prefix — AWS credential chain, io.s3.endpoint for MinIO/Ceph/GCS —, gs://public-bucket/…), or a synthetic volume rendered on read: 'virtual:em?shape=Z,Y,X[&seed=N][&fg=F][&chunk=z,y,x]' (em or ct)")
    .requiredOption('--output <out.zarr>', 'output group')
    .option('--preset <name>', `preset (${PRESET_NAMES.join(', ')})`)
    .option('--config <file>', 'JSON config file (may "extends" a preset)')
    .option('--mode <mode>', 'one-stage or two-stage (default: the config\'s, two-stage)')
    .option('--roi <Z0:Z1,Y0:Y1,X0:X1>', 'process only this sub-volume')
    .option('--provider <ep>', 'execution provider: cpu, cuda, tensorrt, webgpu')
    .option('--threads <n>', 'inference threads', positiveIntArg('--threads'))
    .option('--probabilities', 'also write probabilities/0')
    .option('--overwrite', 'replace an existing output (without it, the same command on the same output resumes)')
    .option('--keep-work', 'keep every intermediate result under OUTPUT/.work (a later run over a larger --roi then recomputes nothing already done)')
    .option('--mask <mask.zarr>', 'tissue mask: an NGFF image group (level 0) or a bare Zarr array, uint8 or bool, nonzero = tissue, at a whole multiple of the input\'s voxel size; tasks with no tissue in reach are skipped and written as background (config `mask` for another level)')
    .option('--allow-missing', 'read missing input chunks as the fill value (counted in the report) instead of failing the tasks that need them')
    .option('--progress-interval <s>', 'off a terminal (batch logs): seconds between progress lines — tasks per kind, voxels, rate, ETA (0: none)', nonNegativeNumberArg('--progress-interval'), 10)
    .option('--json', 'print one JSON report on stdout');
}

function nonNegativeNumberArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number ≥ 0`);
    return n;
  };
}

export interface RunFlags {
  input: string;
  output: string;
  preset?: string;
  config?: string;
  mode?: string;
  roi?: string;
  provider?: string;
  threads?: number;
  probabilities?: boolean;
  overwrite?: boolean;
  keepWork?: boolean;
  allowMissing?: boolean;
  mask?: string;
  progressInterval?: number;
  json?: boolean;
}

export function configFromFlags(o: RunFlags, extra: Record<string, unknown> = {}): { config: TesseraConfig; roi?: Box } {
  if (!o.preset && !o.config) throw new InvalidArgumentError('give --preset NAME or --config FILE');
  const overrides: Record<string, unknown> = { ...extra };
  if (o.mode) overrides.mode = o.mode;
  if (o.provider) overrides.inference = { provider: o.provider };
  if (o.threads) overrides.inference = { ...(overrides.inference as object), threads: o.threads };
  if (o.probabilities) overrides.output = { probabilities: true };
  if (o.allowMissing) overrides.io = { missingChunks: 'fill' };
  if (o.mask !== undefined) overrides.mask = o.mask;
  const config = loadConfig({ preset: o.preset, file: o.config, overrides });
  let roi: Box | undefined;
  if (o.roi) {
    roi = parseBox(o.roi);
    if (!roi) throw new InvalidArgumentError(`--roi "${o.roi}" must look like Z0:Z1,Y0:Y1,X0:X1`);
  }
  return { config, roi };
}

/** A run id from the output path: readable and stable (the same output, the same run). */
export function defaultRunId(output: string): string {
  const abs = path.resolve(output);
  const base = path.basename(abs).replace(/\.zarr$/, '').replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40) || 'run';
  return `${base}-${createHash('sha256').update(abs).digest('hex').slice(0, 8)}`;
}

/**
 * Ctrl-C or a scheduler's SIGTERM aborts the returned signal; `code()` is 128 + the signal's
 * number once one arrived (130 for SIGINT, 143 for SIGTERM), else 0.
 */
export function stopSignals(): { signal: AbortSignal; code: () => number } {
  const ac = new AbortController();
  let code = 0;
  process.once('SIGINT', () => { code = 130; ac.abort(new Error('interrupted')); });
  process.once('SIGTERM', () => { code = 143; ac.abort(new Error('terminated')); });
  // An error the stop caused (a read aborted while the run was opening) is part of the stop:
  // the exit code says the signal, whatever path the run took to end.
  process.once('exit', () => { if (code) process.exitCode = code; });
  return { signal: ac.signal, code: () => code };
}
