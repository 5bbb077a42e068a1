// The run registry: one KV entry per run (see subjects.ts), written by the coordinator, read by
// workers, the merger and `tessera status`.
import type { NatsConnection } from '@nats-io/nats-core';
import { type KV, Kvm } from '@nats-io/kv';
import { StorageType } from '@nats-io/jetstream';
import { type RunRecord, encode, parseRunRecord } from './messages.ts';
import { RUNS_BUCKET, checkRunId } from './subjects.ts';

export function runsBucket(nc: NatsConnection): Promise<KV> {
  // history 1: only the latest record matters; file storage: it outlives a broker restart.
  return new Kvm(nc).create(RUNS_BUCKET, { history: 1, storage: StorageType.File });
}

export async function readRun(kv: KV, run: string): Promise<RunRecord | undefined> {
  const e = await kv.get(checkRunId(run));
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
  return parseRunRecord(`${RUNS_BUCKET}/${run}`, e.value);
}

export async function writeRun(kv: KV, r: RunRecord): Promise<void> {
  await kv.put(checkRunId(r.run), encode({ ...r, updatedAt: new Date().toISOString() }));
}

/** Wait until the run is registered (a worker may start before its coordinator). */
export async function waitForRun(kv: KV, run: string, signal?: AbortSignal, pollMs = 500): Promise<RunRecord | undefined> {
  for (;;) {
    if (signal?.aborted) return undefined;
    const r = await readRun(kv, run).catch(() => undefined);
    if (r) return r;
    await new Promise((res) => setTimeout(res, pollMs));
  }
}
