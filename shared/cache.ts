// A small least-recently-used cache of promises: neighbouring tasks read the same intermediate
// results (a boxes task reads up to 8 stage-one blocks, a paste task 27 stage-two results), and
// a bounded cache keeps them from being read and parsed again while memory stays flat.
// Capacity is in cost units: entries cost 1 unless `get` says otherwise (the decoded-chunk cache
// counts voxels, so small storage chunks are not evicted after a few kilobytes).
export class Lru<T> {
  private readonly map = new Map<string, { p: Promise<T>; cost: number }>();
  private total = 0;
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }

  /**
   * `cost` may be a function of the loaded value (a result's size is known only once read): the
   * entry then counts from when it resolves.
   */
  get(key: string, load: () => Promise<T>, cost: number | ((v: T) => number) = 1): Promise<T> {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.p;
    }
    const p = load();
    // A failed load is not cached: the next reader tries again (and names the cause itself).
    p.catch(() => { if (this.map.get(key)?.p === p) this.delete(key); });
    const entry = { p, cost: typeof cost === 'number' ? cost : 0 };
    this.map.set(key, entry);
    this.total += entry.cost;
    if (typeof cost === 'function') {
      p.then((v) => {
        if (this.map.get(key) !== entry) return;
        entry.cost = cost(v);
        this.total += entry.cost;
        this.evict(entry);
      }, () => {});
    } else this.evict(entry);
    return p;
  }

  /** Drop the least recently used entries until within capacity; `keep` (the newest) stays even when it alone exceeds it. */
  private evict(keep: { p: Promise<T> }): void {
    for (const [k, e] of this.map) {
      if (this.total <= this.max) return;
      if (e !== keep) this.delete(k);
    }
  }

  delete(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.total -= e.cost;
  }
}

/**
 * Map `items` through `load` with up to `depth` loads in flight, yielding results strictly in
 * the items' order. The merger reads one small file per chunk (≈ 8·10⁶ at FAFB size): one at a
 * time, each read's latency adds up; all at once, memory does not stay flat. A failed load
 * throws when its turn comes, never earlier, so what comes before it is still yielded.
 */
export async function* readAhead<I, T>(items: Iterable<I>, load: (item: I) => Promise<T>, depth = 16): AsyncGenerator<[I, T]> {
  const it = items[Symbol.iterator]();
  const window: Array<[I, Promise<T>]> = [];
  const fill = () => {
    while (window.length < Math.max(1, depth)) {
      const n = it.next();
      if (n.done) return;
      const p = load(n.value);
      p.catch(() => {}); // handled when its turn comes
      window.push([n.value, p]);
    }
  };
  fill();
  while (window.length) {
    const [item, p] = window.shift()!;
    const v = await p;
    fill();
    yield [item, v];
  }
}
