// One coordinator per run, across hosts: a lease in the KV bucket `tessera-leases`, key = run
// id. It is taken with kv.create (or, once its holder stopped beating for `ttl` by the holder's
// own written time, by a compare-and-set on the stale entry's revision: of two takers exactly
// one wins) and held by compare-and-set heartbeats every ttl/3. The entry's revision is the
// fencing token: whoever's CAS fails has lost it and must stop before it writes anything.
import * as os from 'node:os';
import type { NatsConnection } from '@nats-io/nats-core';
import { type KV, Kvm } from '@nats-io/kv';
import { StorageType } from '@nats-io/jetstream';
import { LeaseError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkRunId } from './subjects.ts';
import { sleep } from './backoff.ts';

export const LEASES_BUCKET = 'tessera-leases';

export function leasesBucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(LEASES_BUCKET, { history: 1, storage: StorageType.File });
}

/** What the entry holds. */
export interface LeaseValue {
  holder: string;
  epoch: number;
  /** The holder's clock at its last beat (ms since 1970): staleness is judged by it. */
  beatAt: number;
}

export interface LeaseOptions {
  holder: string;
  epoch: number;
  ttlMs: number;
  log: Logger;
  signal?: AbortSignal;
}

export interface Lease {
  /** Aborted (with a LeaseError) once a heartbeat found the lease taken. */
  readonly lost: AbortSignal;
  /**
   * Before a write: passes at once when the last beat is younger than ttl/2; else beats now
   * (a CAS on our revision) and throws a LeaseError when the revision is no longer ours, or when
   * it cannot be confirmed and the last beat is older than ttl (someone may have taken it: a
   * transient LeaseError, see LeaseError.permanent).
   */
  check(): Promise<void>;
  /** The synchronous form (a session's fence): throws when lost, or unconfirmed for ttl. */
  fence(): void;
  /** Stop beating and delete the entry if it is still ours. */
  release(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function readValue(data: Uint8Array): LeaseValue | undefined {
  try {
    const v = JSON.parse(dec.decode(data)) as LeaseValue;
    return typeof v.beatAt === 'number' && typeof v.holder === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A holder on this host whose process is gone (killed, crashed): its lease is taken over at
 * once instead of after its ttl. Another host's holder is judged by its beats only.
 */
function deadHere(holder: string): boolean {
  const [host, pid] = holder.split('/');
  if (host !== os.hostname() || !/^[0-9]+$/.test(pid ?? '')) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** A CAS that failed because the entry moved on (not a transport error). */
function isWrongRevision(err: unknown): boolean {
  return /wrong last sequence|key exists/i.test((err as Error)?.message ?? '');
}

/**
 * Take the run's lease: at once when free or stale; while another holder beats, wait up to two
 * ttls for it to go stale (a pod replaced while its predecessor is still shutting down), then
 * refuse with a LeaseError naming the holder.
 */
export async function takeLease(kv: KV, run: string, o: LeaseOptions): Promise<Lease> {
  const key = checkRunId(run);
  const value = () => enc.encode(JSON.stringify({ holder: o.holder, epoch: o.epoch, beatAt: Date.now() } satisfies LeaseValue));
  const t0 = Date.now();
  let rev = 0;
  let waited = false;
  while (!rev) {
    if (o.signal?.aborted) throw o.signal.reason;
    const e = await kv.get(key);
    const held = e && e.operation === 'PUT' ? readValue(e.value) : undefined;
    try {
      if (!e || !held) rev = e && e.operation === 'PUT' ? await kv.update(key, value(), e.revision) : await kv.create(key, value());
      else if (Date.now() - held.beatAt > o.ttlMs || deadHere(held.holder)) {
        rev = await kv.update(key, value(), e.revision);
        o.log.warn({ holder: held.holder, epoch: held.epoch, silentS: Math.round((Date.now() - held.beatAt) / 1000) }, 'took over the run\'s lease from a coordinator that stopped beating or is gone');
      } else {
        if (Date.now() - t0 > 2 * o.ttlMs) throw new LeaseError(run, `another coordinator (${held.holder}, epoch ${held.epoch}) holds the run's lease and is alive`);
        if (!waited) o.log.warn({ holder: held.holder, epoch: held.epoch }, 'another coordinator holds the run\'s lease; waiting for it to go stale');
        waited = true;
        await sleep(Math.min(1000, o.ttlMs / 3), o.signal);
      }
    } catch (err) {
      // Another taker won the race for this revision: read again.
      if (!isWrongRevision(err)) throw err;
    }
  }
  return holdLease(kv, run, rev, value, o);
}

function holdLease(kv: KV, run: string, first: number, value: () => Uint8Array, o: LeaseOptions): Lease {
  const key = run;
  let rev = first;
  let lastOk = Date.now();
  const lost = new AbortController();
  const lose = (why: string) => {
    if (!lost.signal.aborted) lost.abort(new LeaseError(run, `lost the run's lease: ${why}; stopping without writing`));
  };
  // One beat at a time: a CAS with a revision a concurrent beat just replaced would look lost.
  let beating: Promise<boolean> | undefined;
  const beat = (): Promise<boolean> => {
    beating ??= (async () => {
      const at = Date.now();
      try {
        rev = await kv.update(key, value(), rev, Math.max(1000, o.ttlMs / 3));
        lastOk = at;
        return true;
      } catch (err) {
        if (isWrongRevision(err)) lose('another coordinator took it over');
        return false;
      } finally {
        beating = undefined;
      }
    })();
    return beating;
  };
  const timer = setInterval(() => void beat(), o.ttlMs / 3);
  const fence = () => {
    if (lost.signal.aborted) throw lost.signal.reason;
    if (Date.now() - lastOk > o.ttlMs) throw new LeaseError(run, `the run's lease was not confirmed for ${Math.round((Date.now() - lastOk) / 1000)} s; not writing until it is`, { lost: false });
  };
  return {
    lost: lost.signal,
    fence,
    async check() {
      if (lost.signal.aborted) throw lost.signal.reason;
      if (Date.now() - lastOk <= o.ttlMs / 2) return;
      await beat();
      fence();
    },
    async release() {
      clearInterval(timer);
      await beating;
      if (lost.signal.aborted) return;
      await kv.delete(key, { previousSeq: rev }).catch(() => undefined);
    },
  };
}
