// Typed-array columns to bytes and back: how the instance-id tasks hand each other tables of
// ids, boxes and counts (10⁵–10⁶ rows at FAFB size: JSON would hold a string per number, and V8
// caps a string near 2^29 characters). Little-endian, each column 8-byte aligned so it is read
// back as a view without a copy of its elements.
//
//   u32 column count, then per column: u8 type, 3 bytes padding, f64 length (elements);
//   then the columns' bytes in order, each starting at a multiple of 8.

export type Column = Uint8Array | Int32Array | Uint32Array | Float64Array;

const TYPES = [Uint8Array, Int32Array, Uint32Array, Float64Array] as const;

const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function align8(n: number): number {
  return (n + 7) & ~7;
}

function typeCode(c: Column): number {
  const t = TYPES.findIndex((T) => c instanceof T);
  if (t < 0) throw new TypeError('a column must be a Uint8Array, Int32Array, Uint32Array or Float64Array');
  return t;
}

export function packColumns(cols: readonly Column[]): Uint8Array {
  if (!LITTLE_ENDIAN_HOST) throw new Error('columns: a big-endian host is not supported');
  let at = align8(4 + 12 * cols.length);
  const starts: number[] = [];
  for (const c of cols) {
    starts.push(at);
    at = align8(at + c.byteLength);
  }
  const out = new Uint8Array(at);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, cols.length, true);
  cols.forEach((c, i) => {
    dv.setUint8(4 + 12 * i, typeCode(c));
    dv.setFloat64(8 + 12 * i, c.length, true);
    out.set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), starts[i]);
  });
  return out;
}

/**
 * The columns of `b` (views into it when it is 8-aligned, else copies). `what` names the data in
 * errors: a truncated or foreign buffer is refused rather than read as garbage.
 */
export function unpackColumns(b: Uint8Array, what: string): Column[] {
  const fail = (why: string): never => { throw new RangeError(`${what}: ${why}`); };
  if (b.byteLength < 4) fail(`${b.byteLength} bytes is shorter than a column table`);
  const buf = b.byteOffset % 8 === 0 ? b : b.slice();
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = dv.getUint32(0, true);
  if (4 + 12 * n > buf.byteLength) fail(`says ${n} columns, which do not fit its ${buf.byteLength} bytes`);
  const out: Column[] = [];
  let at = align8(4 + 12 * n);
  for (let i = 0; i < n; i++) {
    const T = TYPES[dv.getUint8(4 + 12 * i)];
    const len = dv.getFloat64(8 + 12 * i, true);
    if (!T || !Number.isSafeInteger(len) || len < 0) fail(`column ${i} has a bad type or length`);
    const bytes = len * T.BYTES_PER_ELEMENT;
    if (at + bytes > buf.byteLength) fail(`column ${i} (${len} elements) runs past the end`);
    out.push(new T(buf.buffer as ArrayBuffer, buf.byteOffset + at, len));
    at = align8(at + bytes);
  }
  return out;
}

/** Concatenate columns of one type (a child's tables into a region's). */
export function concatF64(parts: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
