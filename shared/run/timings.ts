// Where a run's time goes. Phases run one after another and get wall-clock seconds
// (`phase`); inside them chunks overlap (the I/O of one with the compute of another), so the
// work kinds (read, write, network, …) get summed busy seconds (`time`), which may exceed
// the wall clock.
export class Timings {
  private readonly busyMs = new Map<string, number>();
  private readonly wallMs = new Map<string, number>();

  add(kind: string, ms: number): void {
    this.busyMs.set(kind, (this.busyMs.get(kind) ?? 0) + ms);
  }

  /** Busy time of one piece of work of `kind`. */
  async time<T>(kind: string, f: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      this.add(kind, performance.now() - t0);
    }
  }

  /** Wall-clock milliseconds of a phase measured by the caller. */
  addPhase(name: string, ms: number): void {
    this.wallMs.set(name, (this.wallMs.get(name) ?? 0) + ms);
  }

  /** Wall-clock time of a whole phase. */
  async phase<T>(name: string, f: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      this.addPhase(name, performance.now() - t0);
    }
  }

  /** Wall seconds per phase. */
  seconds(): Record<string, number> {
    return round(this.wallMs);
  }

  /** Summed busy seconds per kind of work. */
  busy(): Record<string, number> {
    return round(this.busyMs);
  }
}

function round(m: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of m) out[k] = Math.round(v) / 1000;
  return out;
}
