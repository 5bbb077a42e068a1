// What makes two runs the same run: the config keys that change results, and the models'
// checksums. Its hash is recorded in run.json; a resume with a different identity is refused,
// naming what differs. Keys that only change speed (threads, chunks in flight, request
// concurrency) and names (preset name, model paths) are left out, so a resume may change them.
import { createHash } from 'node:crypto';
import type { TesseraConfig } from '../config/config.ts';
import type { Cards } from '../config/load.ts';

export interface RunIdentity {
  hash: string;
  config: Record<string, unknown>;
  models: Record<string, string>;
}

const RUNTIME_ONLY = ['name', 'models', 'io.concurrency', 'io.chunksInFlight', 'io.readCache', 'inference.threads', 'inference.intraOpThreads', 'nats'];

function flatten(v: unknown, prefix: string, out: Record<string, unknown>): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const k of Object.keys(v).sort()) flatten((v as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k, out);
  } else {
    out[prefix] = v;
  }
}

export function runIdentity(c: TesseraConfig, cards: Cards): RunIdentity {
  const flat: Record<string, unknown> = {};
  flatten(c, '', flat);
  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flat)) {
    if (!RUNTIME_ONLY.some((r) => k === r || k.startsWith(`${r}.`))) config[k] = v;
  }
  const models: Record<string, string> = { fullres: cards.fullres.sha256 };
  if (c.mode === 'two-stage' && cards.lowres) models.lowres = cards.lowres.sha256;
  const hash = createHash('sha256').update(JSON.stringify({ config, models })).digest('hex');
  return { hash, config, models };
}

/** What differs between two identities, one line per key (empty when they are the same run). */
export function identityDiff(before: RunIdentity, now: RunIdentity): string[] {
  const out: string[] = [];
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
