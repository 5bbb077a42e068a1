// The run registry: one KV entry per run (see subjects.ts), written by the coordinator, read by
// workers, the merger and `tessera status`.
import type { NatsConnection } from '@nats-io/nats-core';
import { type KV, Kvm } from '@nats-io/kv';
import { StorageType } from '@nats-io/jetstream';
import { type RunRecord, encode, parseRunRecord } from './messages.ts';
import { RUNS_BUCKET, checkRunId } from './subjects.ts';
import { sleep } from './backoff.ts';
import type { Logger } from '../log.ts';

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
    await sleep(pollMs, signal);
  }
}

/**
 * Follow the run's record (a KV watch on its key): `f` gets the current record, then every
 * new one, as the coordinator writes them (a malformed one is skipped). Returns the stop.
 */
export async function watchRun(kv: KV, run: string, f: (r: RunRecord) => void, log: Logger): Promise<() => void> {
  const it = await kv.watch({ key: checkRunId(run), ignoreDeletes: true });
  void (async () => {
    for await (const e of it) {
      if (e.operation !== 'PUT' || e.value.length === 0) continue;
      try {
        f(parseRunRecord(`${RUNS_BUCKET}/${run}`, e.value));
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'run record skipped');
      }
    }
  })().catch((err) => log.warn({ err: (err as Error).message }, 'run record watch ended'));
  return () => it.stop();
}
