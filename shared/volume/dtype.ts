// The voxel types Tessera reads and writes, and their TypedArray constructors.
export type DType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';

export type TypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

export const INPUT_DTYPES: readonly DType[] = ['uint8', 'uint16', 'float32'];

const CTORS = {
  uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
  uint32: Uint32Array, int32: Int32Array, float32: Float32Array, float64: Float64Array,
} as const;

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(CTORS, s);
}

export function allocate(dtype: DType, length: number): TypedArray {
  return new CTORS[dtype](length);
}

export function dtypeOf(a: TypedArray): DType {
  for (const [k, C] of Object.entries(CTORS)) if (a instanceof C) return k as DType;
  throw new TypeError('unsupported typed array');
}
