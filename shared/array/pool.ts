// Zeroed chunk-sized arrays kept for reuse. A fresh large typed array is fresh pages from the
// kernel, each faulted in and zeroed on first touch: 90 ms for a 32 MiB array touched
// everywhere on the bench VM, 15× what paste's arithmetic over a chunk costs. A task that
// takes arrays here gives them back zeroed (it knows which voxels it wrote), so reuse costs
// neither the faults nor a pass over the whole array. Arrays are handed out as views of the
// smallest kept buffer that holds them, so edge chunks (smaller) reuse the buffers of whole ones.

type Pooled = Float32Array | Uint8Array;
type Kind = 'f32' | 'u8';

export class BufferPool {
  /** Free buffers per kind, whole (their views handed out are prefixes). */
  private readonly free: Record<Kind, ArrayBuffer[]> = { f32: [], u8: [] };
  private held = 0;

  /** Keeps at most `limitBytes` of buffers; what would exceed it is dropped to the GC. */
  constructor(private readonly limitBytes: number) {}

  /** A zeroed Float32Array of `n` elements. */
  f32(n: number): Float32Array {
    const b = this.take('f32', 4 * n);
    return b ? new Float32Array(b, 0, n) : new Float32Array(n);
  }

  /** A zeroed Uint8Array of `n` elements. */
  u8(n: number): Uint8Array {
    const b = this.take('u8', n);
    return b ? new Uint8Array(b, 0, n) : new Uint8Array(n);
  }

  /**
   * Hand back an array from f32() or u8(), every element 0 again (the caller's promise; the
   * rest of its buffer was never handed out, so it still is).
   */
  give(a: Pooled): void {
    const b = a.buffer as ArrayBuffer;
    if (this.held + b.byteLength > this.limitBytes) return;
    this.free[a instanceof Float32Array ? 'f32' : 'u8'].push(b);
    this.held += b.byteLength;
  }

  /** The smallest free buffer of at least `bytes`, taken out of the pool. */
  private take(kind: Kind, bytes: number): ArrayBuffer | undefined {
    const list = this.free[kind];
    let best = -1;
    for (let i = 0; i < list.length; i++) {
      if (list[i].byteLength >= bytes && (best < 0 || list[i].byteLength < list[best].byteLength)) best = i;
    }
    if (best < 0) return undefined;
    const [b] = list.splice(best, 1);
    this.held -= b.byteLength;
    return b;
  }
}
