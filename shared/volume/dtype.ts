// The voxel types Tessera reads and writes, and their TypedArray constructors.
// uint64: instance ids of volumes past 2^32 voxels (an id is 1 + a voxel's raster index). Its
// data is a BigUint64Array, which the per-voxel numeric code never sees: only relabel writes it.
export type DType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64' | 'uint64';

export type TypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

export const INPUT_DTYPES: readonly DType[] = ['uint8', 'uint16', 'float32'];

const CTORS = {
  uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
  uint32: Uint32Array, int32: Int32Array, float32: Float32Array, float64: Float64Array,
} as const;

export function isDType(s: string): s is DType {
  return s === 'uint64' || Object.prototype.hasOwnProperty.call(CTORS, s);
}

export function allocate(dtype: DType, length: number): TypedArray {
  // A uint64 array reads back as BigUint64Array; the callers that read one (tests, viewers)
  // treat its values as ids, never as numbers to compute with.
  if (dtype === 'uint64') return new BigUint64Array(length) as unknown as TypedArray;
  return new CTORS[dtype](length);
}

export function dtypeOf(a: TypedArray): DType {
  if ((a as unknown) instanceof BigUint64Array) return 'uint64';
  for (const [k, C] of Object.entries(CTORS)) if (a instanceof C) return k as DType;
  throw new TypeError('unsupported typed array');
}
