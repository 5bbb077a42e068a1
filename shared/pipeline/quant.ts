// Stage two's stored form of a probability: 16 bits, q = round(p · QUANT) (|Δp| ≤ 7.7·10⁻⁶, far
// below anything that moves an arg-max; a quarter of float32 on disk).

export const QUANT = 65535;

export function quantise(p: Float32Array): Uint16Array {
  const q = new Uint16Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    q[i] = v <= 0 ? 0 : v >= 1 ? QUANT : Math.round(v * QUANT);
  }
  return q;
}

/**
 * q → p: Math.fround(q · INV_QUANT) is exactly the float32 that `q / QUANT` stored into a
 * Float32Array gives, for every q (paste.test.ts checks all 65,536), so paste dequantises by a
 * multiplication in its accumulate loop (a 65,536-entry table cost cache misses there).
 */
export const INV_QUANT = 1 / QUANT;
