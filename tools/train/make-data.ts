// Render synthetic training data for tools/train/train.py.
//
//   node --import tsx tools/train/make-data.ts --kind em --out tools/train/data/em
//        [--seeds 101-106] [--val-seeds 201] [--shape 32,256,256] [--fg 0.005]
//
// Per volume it writes raw little-endian .bin files:
//   <kind>-<seed>-image.bin       full-res image, native dtype (uint8 em, uint16 ct)
//   <kind>-<seed>-labels.bin      full-res labels, uint8 (0/1)
//   <kind>-<seed>-low-image.bin   stage-one image, native dtype: two successive downsampleMean
//                                 [1,2,2], each rounded (exactly pyramid level 2 of `tessera synth`)
//   <kind>-<seed>-low-labels.bin  stage-one labels, uint8: downsampleMax [1,4,4]
// and manifest.json with shapes, dtypes, splits and the global normalisation statistics of
// the raw training intensities: em (--stats all): mean/std over all voxels; ct (--stats
// foreground, nnU-Net's CTNormalization): clip to the [0.5 %, 99.5 %] percentiles of the
// foreground voxels, then their mean/std. Seeds 1..99 are reserved for evaluation.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { synthScene, renderImage, renderLabels, SYNTH_SPACING, SYNTH_CLASSES, type SynthKind } from '../../shared/synth/index.ts';
import { boxOfShape, type Vec3 } from '../../shared/geometry/box.ts';
import { downsampleMean, downsampleMax } from '../../shared/array/resample.ts';
import type { TypedArray } from '../../shared/volume/dtype.ts';
import { type Array3, array3 } from '../../shared/array/array3.ts';

export const LOW_FACTOR: Vec3 = [1, 4, 4];

const DEFAULTS: Record<SynthKind, { seeds: string; val: string; shape: string }> = {
  em: { seeds: '101-112', val: '201', shape: '32,256,256' },
  ct: { seeds: '101-105', val: '201', shape: '48,256,256' },
};

function parseSeeds(s: string): number[] {
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+))?\s*$/.exec(part);
    if (!m) throw new Error(`bad seed list "${s}"`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    for (let v = a; v <= b; v++) out.push(v);
  }
  return out;
}

function parseShape(s: string): Vec3 {
  const v = s.split(',').map(Number);
  if (v.length !== 3 || !v.every((n) => Number.isInteger(n) && n > 0)) throw new Error(`bad shape "${s}"`);
  return [v[0], v[1], v[2]];
}

function roundTo(a: Array3, dtype: 'uint8' | 'uint16'): Array3 {
  const out = dtype === 'uint8' ? new Uint8Array(a.data.length) : new Uint16Array(a.data.length);
  for (let i = 0; i < a.data.length; i++) out[i] = Math.round(a.data[i]);
  return array3(out, a.shape);
}

function write(path: string, a: TypedArray): void {
  writeFileSync(path, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

/** Percentile (0..100) of an integer histogram. */
function histPercentile(hist: Float64Array, total: number, p: number): number {
  const target = (p / 100) * total;
  let acc = 0;
  for (let v = 0; v < hist.length; v++) {
    acc += hist[v];
    if (acc > target) return v;
  }
  return hist.length - 1;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      kind: { type: 'string' },
      out: { type: 'string' },
      seeds: { type: 'string' },
      'val-seeds': { type: 'string' },
      shape: { type: 'string' },
      fg: { type: 'string' },
      stats: { type: 'string' },
    },
  });
  const kind = values.kind as SynthKind;
  if (kind !== 'em' && kind !== 'ct') throw new Error('--kind em|ct is required');
  if (!values.out) throw new Error('--out DIR is required');
  const d = DEFAULTS[kind];
  const train = parseSeeds(values.seeds ?? d.seeds);
  const val = parseSeeds(values['val-seeds'] ?? d.val);
  for (const s of [...train, ...val]) if (s >= 1 && s <= 99) throw new Error(`seed ${s}: seeds 1..99 are reserved for evaluation`);
  if (val.some((s) => train.includes(s))) throw new Error('validation seeds must differ from training seeds');
  const shape = parseShape(values.shape ?? d.shape);
  const fg = values.fg === undefined ? undefined : Number(values.fg);
  const stats = values.stats ?? (kind === 'ct' ? 'foreground' : 'all');
  if (stats !== 'all' && stats !== 'foreground') throw new Error('--stats all|foreground');
  const fgStats = stats === 'foreground';
  mkdirSync(values.out, { recursive: true });

  // Histogram of raw training intensities (integer dtypes) for the global statistics.
  const hist = new Float64Array(kind === 'em' ? 256 : 65536);
  let total = 0;
  const volumes: unknown[] = [];
  for (const [split, seeds] of [['train', train], ['val', val]] as const) {
    for (const seed of seeds) {
      const t0 = performance.now();
      const scene = synthScene({ kind, shape, seed, fg });
      const whole = boxOfShape(shape);
      const img = renderImage(scene, whole);
      const lab = renderLabels(scene, whole);
      // Exactly as `tessera synth` builds pyramid level 2: two [1,2,2] mean steps, each rounded
      // to the volume's dtype (shared/run/synth.ts).
      const low = roundTo(downsampleMean(roundTo(downsampleMean(img, [1, 2, 2]), scene.dtype), [1, 2, 2]), scene.dtype);
      const lowLab = downsampleMax(lab, LOW_FACTOR);
      const lowLabU8 = Uint8Array.from(lowLab.data);
      const base = `${kind}-${seed}`;
      write(join(values.out, `${base}-image.bin`), img.data);
      write(join(values.out, `${base}-labels.bin`), lab.data);
      write(join(values.out, `${base}-low-image.bin`), low.data);
      write(join(values.out, `${base}-low-labels.bin`), lowLabU8);
      let nfg = 0;
      for (const v of lab.data) nfg += v;
      if (split === 'train') {
        if (fgStats) {
          for (let i = 0; i < img.data.length; i++) if (lab.data[i]) { hist[img.data[i]]++; total++; }
        } else {
          for (const v of img.data) hist[v]++;
          total += img.data.length;
        }
      }
      volumes.push({
        seed, split, shape, fg: nfg / lab.data.length,
        image: `${base}-image.bin`, imageDtype: scene.dtype,
        labels: `${base}-labels.bin`, labelsDtype: 'uint8',
        lowShape: low.shape, lowImage: `${base}-low-image.bin`, lowImageDtype: scene.dtype,
        lowLabels: `${base}-low-labels.bin`, lowLabelsDtype: 'uint8',
      });
      console.log(`${split} ${base}: ${shape.join('x')} fg ${(nfg / lab.data.length).toFixed(4)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  let lo = 0, hi = hist.length - 1;
  if (kind === 'ct') {
    lo = histPercentile(hist, total, 0.5);
    hi = histPercentile(hist, total, 99.5);
  }
  let sum = 0, sum2 = 0;
  for (let v = 0; v < hist.length; v++) {
    if (!hist[v]) continue;
    const c = Math.min(hi, Math.max(lo, v));
    sum += hist[v] * c;
    sum2 += hist[v] * c * c;
  }
  const mean = sum / total;
  const std = Math.sqrt(Math.max(1e-12, sum2 / total - mean * mean));
  const normalization = kind === 'ct'
    ? { kind: 'zscore', mean, std, clip: [lo, hi], stats }
    : { kind: 'zscore', mean, std, stats };
  const manifest = {
    kind, spacing: SYNTH_SPACING[kind], lowFactor: LOW_FACTOR,
    lowSpacing: SYNTH_SPACING[kind].map((s, k) => s * LOW_FACTOR[k]),
    classes: SYNTH_CLASSES[kind], normalization, volumes,
    generator: 'tools/train/make-data.ts (shared/synth)',
  };
  writeFileSync(join(values.out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  console.log(`normalization ${JSON.stringify(normalization)}`);
}

main();
