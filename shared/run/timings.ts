// Seconds spent per phase. Chunks overlap (I/O of one with compute of another), so phase
// totals are summed busy time and may exceed the wall clock; `wall` is end to end.
export class Timings {
  private readonly ms = new Map<string, number>();

  add(phase: string, ms: number): void {
    this.ms.set(phase, (this.ms.get(phase) ?? 0) + ms);
  }

  async time<T>(phase: string, f: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      this.add(phase, performance.now() - t0);
    }
  }

  seconds(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of this.ms) out[k] = Math.round(v) / 1000;
    return out;
  }
}
