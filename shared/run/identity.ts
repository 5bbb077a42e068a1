// What makes two runs the same run: the input (where it is and what its metadata says), the
// config keys that change results, and the models' checksums. Its hash is recorded in run.json;
// a resume with a different identity is refused, naming what differs. Keys that only change
// speed (threads, chunks in flight, request concurrency) and names (preset name, model paths)
// are left out, so a resume may change them.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TesseraConfig } from '../config/config.ts';
import type { Cards } from '../config/load.ts';
import type { Level } from '../volume/ome.ts';
import { isVirtual } from '../volume/virtual.ts';
import type { TissueMask } from '../volume/mask.ts';
import { displayUrl, isRemote } from '../volume/remote.ts';
import type { VolumeArray } from '../volume/zarr.ts';

/**
 * The input as a run sees it: its resolved location, and per pyramid level the run reads, what
 * decides the voxels it gets (shape, dtype, chunking, codecs, scale). `metadata` hashes them all.
 */
export interface InputIdentity {
  location: string;
  metadata: string;
  /** One line per level read ("level 0: 16x128x128 uint8, chunks …, scale …, codecs <sha>"). */
  levels: string[];
  /** The ground-truth array boxes were taken from instead of stage one (benchmark oracle). */
  oracle?: string;
  /** The tissue mask: its resolved location and what decides its voxels (mask.ts `describe`, with a hash of its metadata). */
  mask?: string;
}

export interface RunIdentity {
  hash: string;
  config: Record<string, unknown>;
  models: Record<string, string>;
  /** Absent in run.json files written before the identity included the input. */
  input?: InputIdentity;
}

// `mask` is in the input's identity (resolved, with its metadata), not as the config's path.
const RUNTIME_ONLY = ['name', 'mask', 'models', 'io.remote', 'io.s3', 'io.concurrency', 'io.chunksInFlight', 'io.readCache', 'io.lockStale', 'inference.threads', 'inference.intraOpThreads', 'nats'];

function flatten(v: unknown, prefix: string, out: Record<string, unknown>): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const k of Object.keys(v).sort()) flatten((v as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k, out);
  } else {
    out[prefix] = v;
  }
}

/**
 * A location that names the same data wherever the command was started (symlinks resolved; a
 * URL without user info or query, which may hold credentials).
 */
export function resolvedLocation(p: string): string {
  if (isVirtual(p)) return p;
  if (isRemote(p)) return displayUrl(p);
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** The array's own metadata document (codecs, compressor, filters, fill value), if on disk or kept from a URL. */
function arrayMetadata(a: VolumeArray): string {
  for (const f of ['.zarray', 'zarr.json']) {
    try {
      const doc = a.metadataDoc ? { ...a.metadataDoc } : JSON.parse(fs.readFileSync(path.join(a.path, f), 'utf8')) as Record<string, unknown>;
      // Attributes (v3 keeps them in zarr.json) say nothing about the voxels.
      delete doc.attributes;
      const sorted: Record<string, unknown> = {};
      flatten(doc, '', sorted);
      return JSON.stringify(sorted);
    } catch {
      // Not this format (or virtual: its spec string is the location).
    }
  }
  return '';
}

/** The identity of the input levels a run reads (level 0, and stage one's level in two-stage). */
export function inputIdentity(input: string, levels: readonly Level[], oracle?: string, mask?: TissueMask): InputIdentity {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const l of levels) {
    if (seen.has(l.key)) continue;
    seen.add(l.key);
    const a = l.array;
    const codecs = createHash('sha256').update(arrayMetadata(a)).digest('hex').slice(0, 12);
    lines.push(`level ${l.key}: ${a.shape.join('x')} ${a.dtype}, chunks ${a.chunks.join(',')}${a.shard ? `, shards ${a.shard.join(',')}` : ''}, scale ${l.spacing.join(',')}, metadata ${codecs}`);
  }
  const metadata = createHash('sha256').update(lines.join('\n')).digest('hex');
  return {
    location: resolvedLocation(input), metadata, levels: lines, ...(oracle ? { oracle: resolvedLocation(oracle) } : {}),
    ...(mask ? { mask: maskLine(mask) } : {}),
  };
}

function maskLine(m: TissueMask): string {
  const meta = createHash('sha256').update(arrayMetadata(m.array)).digest('hex').slice(0, 12);
  return `${resolvedLocation(m.spec.path)}${m.spec.level !== undefined ? ` level ${m.spec.level}` : ''} (${m.array.shape.join('x')}, factor ${m.factor.join(',')}, metadata ${meta})`;
}

export function runIdentity(c: TesseraConfig, cards: Cards, input: InputIdentity): RunIdentity {
  const flat: Record<string, unknown> = {};
  flatten(c, '', flat);
  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flat)) {
    if (!RUNTIME_ONLY.some((r) => k === r || k.startsWith(`${r}.`))) config[k] = v;
  }
  const models: Record<string, string> = { fullres: cards.fullres.sha256 };
  if (c.mode === 'two-stage' && cards.lowres) models.lowres = cards.lowres.sha256;
  const hash = createHash('sha256').update(JSON.stringify({ config, models, input })).digest('hex');
  return { hash, config, models, input };
}

/** What differs between the inputs of two identities, one line each. */
function inputDiff(before: InputIdentity | undefined, now: InputIdentity | undefined): string[] {
  if (!before) return [`input: not recorded (run.json written by a Tessera before the run identity included the input) → ${now?.location}; resuming across that upgrade is refused`];
  if (!now) return [];
  const out: string[] = [];
  if (before.location !== now.location) out.push(`input: ${before.location} → ${now.location}`);
  if (before.metadata !== now.metadata) {
    const gone = before.levels.filter((l) => !now.levels.includes(l));
    const added = now.levels.filter((l) => !before.levels.includes(l));
    out.push(`input metadata of ${now.location}: ${gone.join(' | ') || 'none'} → ${added.join(' | ') || 'none'}`);
  }
  if (before.oracle !== now.oracle) out.push(`oracle boxes: ${before.oracle ?? 'none'} → ${now.oracle ?? 'none'}`);
  if (before.mask !== now.mask) out.push(`tissue mask: ${before.mask ?? 'none'} → ${now.mask ?? 'none'}`);
  return out;
}

/** What differs between two identities, one line per key (empty when they are the same run). */
export function identityDiff(before: RunIdentity, now: RunIdentity): string[] {
  const out: string[] = inputDiff(before.input, now.input);
  const keys = [...new Set([...Object.keys(before.config ?? {}), ...Object.keys(now.config)])].sort();
  for (const k of keys) {
    const a = JSON.stringify(before.config?.[k]);
    const b = JSON.stringify(now.config[k]);
    if (a !== b) out.push(`${k}: ${a ?? 'unset'} → ${b ?? 'unset'}`);
  }
  for (const m of [...new Set([...Object.keys(before.models ?? {}), ...Object.keys(now.models)])].sort()) {
    if (before.models?.[m] !== now.models[m]) out.push(`model ${m}: sha256 ${before.models?.[m]?.slice(0, 12) ?? 'none'} → ${now.models[m]?.slice(0, 12) ?? 'none'}`);
  }
  return out;
}
