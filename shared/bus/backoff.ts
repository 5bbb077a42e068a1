// The one wait of the bus and of remote reads: retries (a publish, a registration step, a pull,
// an object-storage GET) back off exponentially to a cap, and every wait ends at once when the
// process is stopping.
import type { Logger } from '../log.ts';
import { isPermanent } from '../errors.ts';

/** Wait `ms`, or less if `signal` aborts first (resolves either way: the caller checks the signal). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Milliseconds before retry number `attempt` (0 first): 100 ms doubling to `capMs`. */
export function backoff(attempt: number, capMs = 2000): number {
  return Math.min(capMs, 100 * 2 ** Math.min(attempt, 10));
}

/**
 * `backoff` with "full jitter" (a uniform draw in [0, backoff]): hundreds of workers throttled by
 * the same bucket at once must not come back at once (the AWS architecture blog's advice for
 * 503 SlowDown). `random` is injectable for tests.
 */
export function jittered(attempt: number, capMs = 2000, random: () => number = Math.random): number {
  return Math.round(backoff(attempt, capMs) * random());
}

/**
 * Run `f` until it succeeds: a broker step that failed for a transient cause (server shutdown,
 * timeout, no responders while it restarts) is tried again with backoff, for ever — the
 * connection itself reconnects for ever. A permanent error, or the signal, ends it.
 */
export async function retrying<T>(what: string, signal: AbortSignal | undefined, log: Logger, f: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw signal.reason;
    try {
      return await f();
    } catch (err) {
      if (isPermanent(err) || signal?.aborted) throw err;
      if (attempt % 10 === 0) log.warn({ err: (err as Error)?.message, attempt }, `${what} failed; retrying`);
      await sleep(backoff(attempt, 5000), signal);
    }
  }
}
