// `tessera model card`: write the sidecar of an ONNX network from what the graph says and what
// only its trainer knows (spacing, training patch, normalisation, classes), then prove it by
// running one patch. The graph gives the tensor names, the input channels, the output channel
// count and — by trying sizes — the divisibility its poolings need; one patch of noise shows
// whether the graph outputs logits or already probabilities, so nothing is activated twice.
// This is a one-off command with nothing else on its event loop, so the session runs here
// rather than in an inference thread.
import * as fs from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { Vec3 } from '../geometry/box.ts';
import { ModelError } from '../errors.ts';
import { mulberry32 } from '../synth/random.ts';
import { type ModelCard, type Normalization, loadModelCard, sha256File, sidecarPath } from './model.ts';
import { writeJsonAtomic } from '../volume/store.ts';

export interface CardOptions {
  /** Voxel size the network was trained at, [z, y, x]. */
  spacing: Vec3;
  /** The training patch (what the network is run at unless a config allows otherwise). */
  patch: Vec3;
  classes: string[];
  normalization: Normalization;
  /** What the graph outputs. @default 'logits' */
  output?: 'logits' | 'probabilities';
  /** @default 'softmax' */
  activation?: 'softmax' | 'sigmoid';
  /** Multiples every input size must be; probed from the graph when absent. */
  divisor?: Vec3;
  name?: string;
  kind?: string;
  stage?: 'fullres' | 'lowres';
  /** Needed only when the graph has several inputs / outputs. */
  inputName?: string;
  outputName?: string;
  /** Replace an existing sidecar. @default false */
  overwrite?: boolean;
}

export interface CardReport {
  sidecar: string;
  card: Record<string, unknown>;
  /** Output value range on one patch of noise. */
  range: [number, number];
  divisorProbed: boolean;
  /** The graph's operator that normalises over the whole window (crops packed in one canvas then affect each other), if any. */
  windowNorm?: string;
}

type Session = ort.InferenceSession;

function pick(names: readonly string[], want: string | undefined, what: string, onnx: string): string {
  if (want) {
    if (!names.includes(want)) throw new ModelError(onnx, `the graph has no ${what} "${want}" (it has ${names.join(', ')})`);
    return want;
  }
  if (names.length !== 1) throw new ModelError(onnx, `the graph has ${names.length} ${what}s (${names.join(', ')}); name one with --${what}-name`);
  return names[0];
}

/** The fixed size of dimension `i` of a tensor, or undefined when symbolic. */
function fixedDim(s: Session, io: 'input' | 'output', name: string, i: number): number | undefined {
  const meta = (io === 'input' ? s.inputMetadata : s.outputMetadata).find((m) => m.name === name);
  const d = meta && meta.isTensor ? meta.shape[i] : undefined;
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function noise(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  // Box–Muller: normalised inputs look like N(0, 1).
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

async function runOnce(s: Session, input: string, output: string, size: Vec3, channels: number): Promise<ort.Tensor> {
  const n = channels * size[0] * size[1] * size[2];
  const r = await s.run({ [input]: new ort.Tensor('float32', noise(n, 1), [1, channels, ...size]) }, [output]);
  return r[output];
}

/** Does the network take `size` and give back the same spatial size? */
async function accepts(s: Session, input: string, output: string, size: Vec3, channels: number): Promise<boolean> {
  try {
    const t = await runOnce(s, input, output, size, channels);
    return t.dims.length === 5 && t.dims.slice(2).every((d, a) => d === size[a]);
  } catch {
    return false;
  }
}

/**
 * Per axis, the smallest d in 1, 2, 4, …, 64 such that the network accepts the patch grown by d
 * on that axis (a U-Net with k poolings along an axis needs multiples of 2^k there).
 */
async function probeDivisor(s: Session, input: string, output: string, patch: Vec3, channels: number, onnx: string): Promise<Vec3> {
  const div: number[] = [];
  for (let a = 0; a < 3; a++) {
    let found = 0;
    for (let d = 1; d <= 64 && !found; d *= 2) {
      if (patch[a] % d !== 0) break;
      const size = patch.map((v, b) => (b === a ? v + d : v)) as unknown as Vec3;
      if (await accepts(s, input, output, size, channels)) found = d;
    }
    if (!found) throw new ModelError(onnx, `cannot find the size multiple the network needs along axis ${'zyx'[a]} (tried up to 64 that divide the patch ${patch[a]}); pass --divisor`);
    div.push(found);
  }
  return div as unknown as Vec3;
}

/**
 * How far one input voxel's change reaches in the output, per axis: the network's receptive
 * field as it acts (half-width), measured by changing the centre voxel of a noise patch and
 * finding every output voxel that changed at all — for a local network outside that reach the
 * output is bit for bit the same (same inputs in every window, same sums). The probe starts at
 * twice the training patch and doubles along an axis the change reached the border of, while it
 * stays under PROBE_VOXELS; where the change still reaches the border (a window-normalising
 * network, or a field wider than the probe) the reach is a lower bound (`atLeast`).
 */
export async function probeReach(s: Session, input: string, output: string, patch: Vec3, channels: number): Promise<{ voxels: Vec3; atLeast: boolean }> {
  let size = patch.map((p) => 2 * p) as unknown as Vec3;
  for (;;) {
    const r = await reachIn(s, input, output, size, channels);
    const grow = size.map((v, a) => (r.border[a] ? 2 * v : v)) as unknown as Vec3;
    if (!r.border.some(Boolean) || grow[0] * grow[1] * grow[2] > PROBE_VOXELS) return { voxels: r.voxels, atLeast: r.border.some(Boolean) };
    size = grow;
  }
}

const PROBE_VOXELS = 2 ** 24;

async function reachIn(s: Session, input: string, output: string, size: Vec3, channels: number): Promise<{ voxels: Vec3; border: boolean[] }> {
  const n = size[0] * size[1] * size[2];
  const x = noise(channels * n, 2);
  const c = size.map((v) => v >> 1);
  const run = async (d: Float32Array) => (await s.run({ [input]: new ort.Tensor('float32', d, [1, channels, ...size]) }, [output]))[output].data as Float32Array;
  const a = await run(x);
  x[(c[0] * size[1] + c[1]) * size[2] + c[2]] += 3;
  const b = await run(x);
  const lo = [...c], hi = [...c];
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const v = i % n;
    const p = [Math.floor(v / (size[1] * size[2])), Math.floor(v / size[2]) % size[1], v % size[2]];
    for (let q = 0; q < 3; q++) { if (p[q] < lo[q]) lo[q] = p[q]; if (p[q] > hi[q]) hi[q] = p[q]; }
  }
  return {
    voxels: [0, 1, 2].map((q) => Math.max(c[q] - lo[q], hi[q] - c[q])) as unknown as Vec3,
    border: [0, 1, 2].map((q) => lo[q] === 0 || hi[q] === size[q] - 1),
  };
}

export async function writeModelCard(onnx: string, o: CardOptions): Promise<CardReport> {
  if (!fs.existsSync(onnx)) throw new ModelError(onnx, 'file not found');
  const sidecar = sidecarPath(onnx);
  if (fs.existsSync(sidecar) && !o.overwrite) throw new ModelError(onnx, `sidecar ${sidecar} exists; pass --overwrite to replace it`);
  let s: Session;
  try {
    // Fatal-only logging: probing sizes the network refuses is expected, not an error to print.
    s = await ort.InferenceSession.create(onnx, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', logSeverityLevel: 4 });
  } catch (cause) {
    throw new ModelError(onnx, `ONNX Runtime cannot load it: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
  try {
    const inputName = pick(s.inputNames, o.inputName, 'input', onnx);
    const outputName = pick(s.outputNames, o.outputName, 'output', onnx);
    const channels = fixedDim(s, 'input', inputName, 1) ?? 1;
    const fixed = [2, 3, 4].map((i) => fixedDim(s, 'input', inputName, i));
    fixed.forEach((d, a) => {
      if (d !== undefined && d !== o.patch[a]) throw new ModelError(onnx, `the graph's input has a fixed size ${d} along ${'zyx'[a]}, but the patch says ${o.patch[a]}`);
    });
    const output = o.output ?? 'logits';
    const activation = o.activation ?? 'softmax';
    const t = await runOnce(s, inputName, outputName, o.patch, channels);
    if (t.dims.length !== 5 || t.dims.slice(2).some((d, a) => d !== o.patch[a])) {
      throw new ModelError(onnx, `one patch ${o.patch.join('x')} gave an output of shape [${t.dims.join(', ')}]; expected [1, K, ${o.patch.join(', ')}]`);
    }
    const k = Number(t.dims[1]);
    if (k !== o.classes.length) throw new ModelError(onnx, `the graph outputs ${k} channels but ${o.classes.length} classes were given (${o.classes.join(', ')})`);
    const data = t.data as Float32Array;
    const vox = data.length / k;
    let lo = Infinity, hi = -Infinity, sumsToOne = true;
    for (let v = 0; v < vox; v++) {
      let sum = 0;
      for (let c = 0; c < k; c++) {
        const x = data[c * vox + v];
        if (!Number.isFinite(x)) throw new ModelError(onnx, 'one patch of noise gave a non-finite output');
        lo = Math.min(lo, x); hi = Math.max(hi, x); sum += x;
      }
      if (Math.abs(sum - 1) > 1e-3) sumsToOne = false;
    }
    if (output === 'probabilities' && (lo < -1e-5 || hi > 1 + 1e-5)) {
      throw new ModelError(onnx, `--output probabilities, but one patch gave values in [${lo.toPrecision(4)}, ${hi.toPrecision(4)}]: the graph outputs logits (leave --output at logits)`);
    }
    if (output === 'logits' && activation === 'softmax' && k > 1 && sumsToOne && lo >= 0) {
      throw new ModelError(onnx, 'the graph\'s channels already sum to 1 at every voxel: it applies softmax itself; pass --output probabilities so it is not applied twice');
    }
    const divisorProbed = !o.divisor;
    const divisor = o.divisor ?? await probeDivisor(s, inputName, outputName, o.patch, channels, onnx);
    const reach = await probeReach(s, inputName, outputName, o.patch, channels);
    const card: Record<string, unknown> = {
      name: o.name ?? onnx.replace(/^.*\//, '').replace(/\.onnx$/, ''),
      ...(o.kind ? { kind: o.kind } : {}),
      ...(o.stage ? { stage: o.stage } : {}),
      spacing: o.spacing, inputName, outputName, classes: o.classes, output, activation, channels,
      normalization: o.normalization, patchSize: o.patch, divisor, reach, sha256: sha256File(onnx),
    };
    await writeJsonAtomic(sidecar, card);
    let loaded: ModelCard;
    try {
      loaded = loadModelCard(onnx);
    } catch (err) {
      fs.rmSync(sidecar, { force: true });
      throw err;
    }
    return { sidecar, card, range: [lo, hi], divisorProbed, windowNorm: loaded.windowNorm };
  } finally {
    await s.release();
  }
}
