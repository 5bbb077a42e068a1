// Zeroed chunk-sized arrays kept for reuse. A fresh large typed array is fresh pages from the
// kernel, each faulted in and zeroed on first touch: 90 ms for a 32 MiB array touched
// everywhere on the bench VM, 15× what paste's arithmetic over a chunk costs. A task that
// takes arrays here gives them back zeroed (it knows which voxels it wrote), so reuse costs
// neither the faults nor a pass over the whole array.

type Pooled = Float32Array | Uint8Array;

export class BufferPool {
  private readonly free = new Map<string, Pooled[]>();
  private held = 0;

  /** Keeps at most `limitBytes` of arrays; what would exceed it is dropped to the GC. */
  constructor(private readonly limitBytes: number) {}

  /** A zeroed Float32Array of `n` elements. */
  f32(n: number): Float32Array {
    return (this.take(`f32:${n}`) as Float32Array | undefined) ?? new Float32Array(n);
  }

  /** A zeroed Uint8Array of `n` elements. */
  u8(n: number): Uint8Array {
    return (this.take(`u8:${n}`) as Uint8Array | undefined) ?? new Uint8Array(n);
  }

  /** Hand back an array taken here, every element 0 again (the caller's promise). */
  give(a: Pooled): void {
    if (this.held + a.byteLength > this.limitBytes) return;
    const key = `${a instanceof Float32Array ? 'f32' : 'u8'}:${a.length}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(a);
    this.held += a.byteLength;
  }

  private take(key: string): Pooled | undefined {
    const a = this.free.get(key)?.pop();
    if (a) this.held -= a.byteLength;
    return a;
  }
}
