// A small least-recently-used cache of promises: neighbouring tasks read the same intermediate
// results (a boxes task reads up to 8 stage-one blocks, a paste task 27 stage-two results), and
// a bounded cache keeps them from being read and parsed again while memory stays flat.
// Capacity is in cost units: entries cost 1 unless `get` says otherwise (the decoded-chunk cache
// counts voxels, so small storage chunks are not evicted after a few kilobytes).
export class Lru<T> {
  private readonly map = new Map<string, { p: Promise<T>; cost: number }>();
  private total = 0;
  constructor(private readonly max: number) {}

  get(key: string, load: () => Promise<T>, cost = 1): Promise<T> {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.p;
    }
    const p = load();
    // A failed load is not cached: the next reader tries again (and names the cause itself).
    p.catch(() => { if (this.map.get(key)?.p === p) this.delete(key); });
    this.map.set(key, { p, cost });
    this.total += cost;
    // The newest entry stays even when it alone exceeds the capacity.
    while (this.total > this.max && this.map.size > 1) this.delete(this.map.keys().next().value!);
    return p;
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
