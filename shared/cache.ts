// A small least-recently-used cache of promises: neighbouring tasks read the same intermediate
// results (a boxes task reads up to 8 stage-one blocks, a paste task 27 stage-two results), and
// a bounded cache keeps them from being read and parsed again while memory stays flat.
export class Lru<T> {
  private readonly map = new Map<string, Promise<T>>();
  constructor(private readonly max: number) {}

  get(key: string, load: () => Promise<T>): Promise<T> {
    let p = this.map.get(key);
    if (p) {
      this.map.delete(key);
      this.map.set(key, p);
      return p;
    }
    p = load();
    // A failed load is not cached: the next reader tries again (and names the cause itself).
    p.catch(() => this.map.delete(key));
    this.map.set(key, p);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    return p;
  }

  delete(key: string): void {
    this.map.delete(key);
  }
}
