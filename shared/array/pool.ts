// Zeroed chunk-sized arrays kept for reuse. A fresh large typed array is fresh pages from the
// kernel, each faulted in and zeroed on first touch: 90 ms for a 32 MiB array touched
// everywhere on the bench VM, 15× what paste's arithmetic over a chunk costs. A task that
// takes arrays here gives them back zeroed (it knows which voxels it wrote), so reuse costs
// neither the faults nor a pass over the whole array. Arrays are handed out as views of the
// smallest kept buffer that holds them, and new buffers hold at least a whole chunk, so edge
// chunks (smaller) and whole ones share buffers: the pastes in flight need one set each.

type Pooled = Float32Array | Uint32Array | Uint8Array;
/** Buffers by element size: float32 sums and uint32 labels share the 4-byte ones. */
type Kind = 'f32' | 'u8';

export class BufferPool {
  /** Free buffers per kind, whole (their views handed out are prefixes). */
  private readonly free: Record<Kind, ArrayBuffer[]> = { f32: [], u8: [] };
  private held = 0;

  /**
   * Keeps at most `limitBytes` of buffers (what would exceed it is dropped to the GC); a new
   * buffer holds at least `minElements` (a whole chunk).
   */
  private readonly limitBytes: number;
  private readonly minElements: number;

  constructor(limitBytes: number, minElements = 0) {
    this.limitBytes = limitBytes;
    this.minElements = minElements;
  }

  /** A zeroed Float32Array of `n` elements. */
  f32(n: number): Float32Array {
    return new Float32Array(this.take('f32', 4 * n) ?? new ArrayBuffer(4 * Math.max(n, this.minElements)), 0, n);
  }

  /** A zeroed Uint32Array of `n` elements (a chunk's labels), from the same buffers as f32(). */
  u32(n: number): Uint32Array {
    return new Uint32Array(this.take('f32', 4 * n) ?? new ArrayBuffer(4 * Math.max(n, this.minElements)), 0, n);
  }

  /** A zeroed Uint8Array of `n` elements. */
  u8(n: number): Uint8Array {
    return new Uint8Array(this.take('u8', n) ?? new ArrayBuffer(Math.max(n, this.minElements)), 0, n);
  }

  /**
   * Hand back an array from f32() or u8(), every element 0 again (the caller's promise; the
   * rest of its buffer was never handed out, so it still is).
   */
  give(a: Pooled): void {
    const b = a.buffer as ArrayBuffer;
    if (this.held + b.byteLength > this.limitBytes) return;
    this.free[a instanceof Uint8Array ? 'u8' : 'f32'].push(b);
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
