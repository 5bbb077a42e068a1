// Turning a preset name, a config file and CLI overrides into one validated TesseraConfig, and
// cross-checking it against the models' sidecars before any work starts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Vec3 } from '../geometry/box.ts';
import { type TesseraConfig, DEFAULTS, SCHEMA } from './config.ts';
import { PRESET_NAMES, preset } from './presets.ts';
import { deepMerge, validate } from './schema.ts';
import { ConfigError, ModelError } from '../errors.ts';
import { type ModelCard, loadModelCard } from '../infer/model.ts';

/**
 * The Tessera package root (presets' model paths are relative to it): the nearest folder above
 * this module holding package.json — shared/config/ in a clone, dist/shared/config/ when packed.
 */
export const PACKAGE_ROOT = packageRoot(path.dirname(fileURLToPath(import.meta.url)));

function packageRoot(from: string): string {
  for (let d = from; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) return path.resolve(from, '../..');
  }
}

export interface ConfigSource {
  preset?: string;
  file?: string;
  /** Applied last, e.g. {mode: "one-stage"} from CLI flags. */
  overrides?: Record<string, unknown>;
}

export function loadConfig(src: ConfigSource): TesseraConfig {
  let base: TesseraConfig = DEFAULTS as unknown as TesseraConfig;
  let dir = PACKAGE_ROOT;
  if (src.preset !== undefined) {
    const p = preset(src.preset);
    if (!p) throw new ConfigError('preset', `unknown preset "${src.preset}" (known: ${PRESET_NAMES.join(', ')})`);
    base = p;
  }
  let resolved = { ...base } as TesseraConfig;
  resolveModels(resolved, dir);
  if (src.file !== undefined) {
    if (!fs.existsSync(src.file)) throw new ConfigError('config', `file ${src.file} not found`);
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(fs.readFileSync(src.file, 'utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw new ConfigError('config', `${src.file} is not valid JSON: ${(cause as Error).message}`, { cause });
    }
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
      throw new ConfigError('config', `${src.file} must hold a JSON object, not ${doc === null ? 'null' : Array.isArray(doc) ? 'an array' : typeof doc}`);
    }
    const { extends: ext, ...rest } = doc;
    if (ext !== undefined) {
      if (typeof ext !== 'string' || !preset(ext)) throw new ConfigError('extends', `unknown preset ${JSON.stringify(ext)} in ${src.file} (known: ${PRESET_NAMES.join(', ')})`);
      resolved = preset(ext)!;
      resolveModels(resolved, PACKAGE_ROOT);
    }
    dir = path.dirname(path.resolve(src.file));
    const models = rest.models as Record<string, unknown> | undefined;
    if (rest.mask !== undefined) {
      rest.mask = maskRelativeTo(rest.mask, dir);
      resolved = { ...resolved, mask: undefined };
    }
    resolved = deepMerge(resolved, rest);
    if (models && typeof models === 'object') {
      resolved.models = { ...resolved.models };
      for (const k of ['fullres', 'lowres'] as const) {
        if (typeof models[k] === 'string') resolved.models[k] = path.resolve(dir, models[k] as string);
      }
    }
  }
  const over = src.overrides?.mask !== undefined ? { ...src.overrides, mask: maskRelativeTo(src.overrides.mask, process.cwd()) } : src.overrides;
  // A mask replaces the one before it whole (a path after an object must not keep its level).
  if (over?.mask !== undefined) resolved = { ...resolved, mask: undefined };
  resolved = deepMerge(resolved, over);
  try {
    validate(SCHEMA, resolved);
  } catch (err) {
    if (err instanceof ConfigError && src.file) throw new ConfigError(err.key, `${err.message.replace(/^config [^:]+: /, '')} (in ${src.file})`);
    throw err;
  }
  const c = resolved;
  if (c.io.chunk.some((v, a) => v % c.io.outputChunk[a] !== 0)) {
    throw new ConfigError('io.chunk', `[${c.io.chunk}] must be a multiple of io.outputChunk [${c.io.outputChunk}] so chunks never share a storage chunk`);
  }
  if (c.stage1.spacing.some((s, a) => s < c.spacing[a] * 0.99)) {
    throw new ConfigError('stage1.spacing', `[${c.stage1.spacing}] is finer than the full resolution [${c.spacing}]`);
  }
  return c;
}

/** A mask as `{ path, level }` with its path resolved against `dir`; anything malformed is left for validate() to name. */
function maskRelativeTo(m: unknown, dir: string): unknown {
  if (typeof m === 'string' && m.length > 0) return { path: path.resolve(dir, m) };
  if (m && typeof m === 'object' && !Array.isArray(m) && typeof (m as { path?: unknown }).path === 'string' && (m as { path: string }).path.length > 0) {
    return { ...m, path: path.resolve(dir, (m as { path: string }).path) };
  }
  return m;
}

function resolveModels(c: TesseraConfig, dir: string): void {
  if (!c.models) return;
  c.models = { ...c.models };
  for (const k of ['fullres', 'lowres'] as const) if (typeof c.models[k] === 'string') c.models[k] = path.resolve(dir, c.models[k]);
}

export interface Cards {
  fullres: ModelCard;
  lowres?: ModelCard;
}

function divisible(key: string, v: Vec3, card: ModelCard, file: string): void {
  if (v.some((x, a) => x % card.divisor[a] !== 0)) {
    throw new ConfigError(key, `[${v}] is not divisible by [${card.divisor}], which model ${file} needs`);
  }
}

/** The network runs at the patch its card says it was trained at, unless the config allows otherwise. */
function trainingPatch(c: TesseraConfig, key: string, v: Vec3, card: ModelCard, file: string): void {
  if (c.models.allowOtherPatch || v.every((x, a) => x === card.patchSize[a])) return;
  throw new ConfigError(key, `[${v}] differs from the patch [${card.patchSize}] model ${file} was trained at (its card's patchSize); a network sees other statistics at another size — use the training patch, or set models.allowOtherPatch: true to run it anyway`);
}

function close(a: Vec3, b: Vec3): boolean {
  return a.every((x, i) => Math.abs(x - b[i]) <= 0.01 * Math.max(x, b[i]));
}

/**
 * Load the model cards the mode needs and check config against them: files present, patch
 * and canvas sizes divisible, spacings equal, one input channel. Throws ConfigError naming the
 * key (and the model file) at fault.
 */
export function checkModels(c: TesseraConfig): Cards {
  const load = (key: 'fullres' | 'lowres') => {
    try {
      return loadModelCard(c.models[key]);
    } catch (err) {
      if (err instanceof ModelError) throw new ConfigError(`models.${key}`, err.message, { cause: err });
      throw err;
    }
  };
  const fullres = load('fullres');
  if (fullres.channels !== 1) throw new ConfigError('models.fullres', `model takes ${fullres.channels} input channels; Tessera feeds one`);
  if (!close(fullres.spacing, c.spacing)) {
    throw new ConfigError('spacing', `[${c.spacing}] differs from the spacing [${fullres.spacing}] model ${c.models.fullres} was trained at`);
  }
  if (c.mode === 'one-stage') {
    divisible('baseline.patch', c.baseline.patch, fullres, c.models.fullres);
    trainingPatch(c, 'baseline.patch', c.baseline.patch, fullres, c.models.fullres);
    return { fullres };
  }
  const lowres = load('lowres');
  if (lowres.channels !== 1) throw new ConfigError('models.lowres', `model takes ${lowres.channels} input channels; Tessera feeds one`);
  if (!close(lowres.spacing, c.stage1.spacing)) {
    throw new ConfigError('stage1.spacing', `[${c.stage1.spacing}] differs from the spacing [${lowres.spacing}] model ${c.models.lowres} was trained at`);
  }
  divisible('stage1.patch', c.stage1.patch, lowres, c.models.lowres);
  divisible('pack.canvas', c.pack.canvas, fullres, c.models.fullres);
  trainingPatch(c, 'stage1.patch', c.stage1.patch, lowres, c.models.lowres);
  trainingPatch(c, 'pack.canvas', c.pack.canvas, fullres, c.models.fullres);
  if (c.pack.crop.some((v, a) => v > c.pack.canvas[a])) throw new ConfigError('pack.crop', `[${c.pack.crop}] does not fit in pack.canvas [${c.pack.canvas}]`);
  return { fullres, lowres };
}
