// A model is an ONNX file plus a JSON sidecar ("model card") that says how to feed it:
// spacing, normalisation (global statistics, fixed for the whole run), patch size, the
// divisibility its U-Net needs, classes. Cards are validated when loaded, never trusted.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { Vec3 } from '../geometry/box.ts';
import { ModelError } from '../errors.ts';

export interface Normalization {
  kind: 'zscore';
  mean: number;
  std: number;
  /** Intensities are clipped to [lo, hi] before standardising (nnU-Net CT style). */
  clip?: [number, number];
}

export interface ModelCard {
  name: string;
  spacing: Vec3;
  inputName: string;
  outputName: string;
  classes: string[];
  /** What the graph outputs: raw `logits` (Tessera applies `activation`) or `probabilities` (nothing applied). */
  output: 'logits' | 'probabilities';
  /** How the channels relate: `softmax` (one class per voxel, channel 0 background) or `sigmoid` (independent channels). */
  activation: 'softmax' | 'sigmoid';
  channels: number;
  normalization: Normalization;
  patchSize: Vec3;
  /** D, H, W of any input must be multiples of these (2^poolings per axis). */
  divisor: Vec3;
  /**
   * How far an input voxel's change reaches in the output, [z, y, x] voxels (the receptive
   * field's half-width as `tessera model card` measured it); `atLeast`: it reached the probe's
   * border (a window-normalising network, or a field wider than twice the patch).
   */
  reach?: { voxels: Vec3; atLeast: boolean };
  sha256: string;
  /**
   * Derived at load from the graph, never written in a sidecar: the operator that normalises
   * over the whole input window, if any (see windowNormOf).
   */
  windowNorm?: string;
}

/** Runs one network on one batch: the only thing pipelines know about inference. */
export interface Model {
  readonly card: ModelCard;
  /** input: N×C×D×H×W float32; returns N×K×D×H×W network output (what the card's `output` says). */
  run(input: Float32Array, dims: readonly number[], signal?: AbortSignal): Promise<{ data: Float32Array; dims: number[] }>;
}

export function sidecarPath(onnxPath: string): string {
  return onnxPath.replace(/\.onnx$/, '') + '.json';
}

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** ONNX operators that normalise over a whole input window rather than per channel with fixed statistics. */
const WINDOW_NORMS = ['InstanceNormalization', 'GroupNormalization', 'LayerNormalization'];

/**
 * The first operator in the graph that normalises over the whole input window, if any
 * (nnU-Net's exports hold InstanceNormalization). Such a network lets every crop packed in a
 * canvas change every other crop's output, however far apart they lie; a net whose batch norm is
 * folded into its convs is local. Found by the operator's name in the file's bytes: protobuf
 * stores a node's op_type as plain bytes, and ONNX Runtime does not list a session's operators.
 */
function windowNormOf(bytes: Buffer): string | undefined {
  return WINDOW_NORMS.find((op) => bytes.includes(op));
}

function vec3(v: unknown): v is Vec3 {
  return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0);
}

/** Every key a model card may hold (`training` and the rest are provenance, kept as written). */
const CARD_KEYS = new Set([
  'name', 'kind', 'stage', 'spacing', 'inputName', 'outputName', 'classes', 'output', 'activation', 'channels', 'normalization',
  'patchSize', 'divisor', 'reach', 'levels', 'features', 'sha256', 'training',
]);

/** Load and validate the card of `onnxPath`; checks that the file's sha256 matches the card. */
export function loadModelCard(onnxPath: string, opts: { verifyHash?: boolean } = {}): ModelCard {
  if (!fs.existsSync(onnxPath)) throw new ModelError(onnxPath, 'file not found (docs/models.md: which networks ship with Tessera, and how to get, train or card the others)');
  const side = sidecarPath(onnxPath);
  if (!fs.existsSync(side)) throw new ModelError(onnxPath, `sidecar ${side} not found`);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(fs.readFileSync(side, 'utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new ModelError(side, `invalid JSON: ${(cause as Error).message}`, { cause });
  }
  const bad = (key: string, why: string) => new ModelError(side, `key "${key}" ${why}`);
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new ModelError(side, 'must hold a JSON object');
  // Strict: a misspelt key would otherwise be ignored and its default used in silence.
  for (const k of Object.keys(c)) if (!CARD_KEYS.has(k)) throw bad(k, `is not a model card key (known: ${[...CARD_KEYS].join(', ')})`);
  if (typeof c.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(c.sha256)) throw bad('sha256', 'is required: the sha256 of the .onnx file, 64 hex digits');
  for (const k of ['inputName', 'outputName'] as const) {
    if (typeof c[k] !== 'string' || !(c[k] as string).length) throw bad(k, 'is required: the name of the graph\'s input / output tensor');
  }
  for (const k of ['spacing', 'patchSize', 'divisor'] as const) if (!vec3(c[k])) throw bad(k, 'must be three positive numbers');
  if (!Array.isArray(c.classes) || c.classes.length < 1) throw bad('classes', 'must be a non-empty list');
  // A graph with softmax inside that is softmaxed again squashes its output towards 1/K (seen
  // with a real PyTorch export): the card must say which of the two the graph gives.
  if (c.output === 'softmax' || c.output === 'sigmoid') {
    throw bad('output', `"${c.output}" is ambiguous: write "output": "logits" (or "probabilities" when the graph applies ${c.output} itself) and "activation": "${c.output}"`);
  }
  if (c.output !== 'logits' && c.output !== 'probabilities') throw bad('output', 'must be "logits" (the graph\'s raw output) or "probabilities" (the graph applies the activation itself)');
  if (c.activation !== 'softmax' && c.activation !== 'sigmoid') throw bad('activation', 'is required: "softmax" (channel 0 is background) or "sigmoid" (independent channels)');
  const n = c.normalization as Normalization | undefined;
  if (!n || n.kind !== 'zscore' || !(typeof n.mean === 'number') || !(typeof n.std === 'number' && n.std > 0)) {
    throw bad('normalization', 'must be {kind: "zscore", mean, std > 0, clip?}');
  }
  const patch = c.patchSize as Vec3;
  const div = c.divisor as Vec3;
  if (patch.some((p, a) => p % div[a] !== 0)) throw bad('patchSize', `[${patch.join(',')}] is not divisible by divisor [${div.join(',')}]`);
  const reach = c.reach as ModelCard['reach'] | undefined;
  if (reach !== undefined && (!reach || typeof reach !== 'object' || !Array.isArray(reach.voxels) || reach.voxels.length !== 3 || !reach.voxels.every((v) => Number.isInteger(v) && v >= 0) || typeof reach.atLeast !== 'boolean')) {
    throw bad('reach', 'must be {voxels: [z, y, x] whole numbers ≥ 0, atLeast: true|false} (tessera model card measures it)');
  }
  const card: ModelCard = {
    name: String(c.name ?? onnxPath),
    spacing: c.spacing as Vec3,
    inputName: c.inputName as string,
    outputName: c.outputName as string,
    classes: (c.classes as unknown[]).map(String),
    output: c.output,
    activation: c.activation,
    channels: Number(c.channels ?? 1),
    normalization: n,
    patchSize: patch,
    divisor: div,
    ...(reach ? { reach } : {}),
    sha256: String(c.sha256 ?? ''),
  };
  if (opts.verifyHash !== false) {
    // One read for both: an nnU-Net export can be hundreds of MB.
    const bytes = fs.readFileSync(onnxPath);
    const got = createHash('sha256').update(bytes).digest('hex');
    if (card.sha256 && card.sha256 !== got) throw new ModelError(onnxPath, `sha256 ${got} does not match the sidecar's ${card.sha256}`);
    card.sha256 = got;
    card.windowNorm = windowNormOf(bytes);
  }
  return card;
}

/** Standardise raw intensities in place-free fashion with the card's global statistics. */
export function normalize(raw: ArrayLike<number>, n: Normalization): Float32Array {
  const out = new Float32Array(raw.length);
  const inv = 1 / n.std;
  const [lo, hi] = n.clip ?? [-Infinity, Infinity];
  for (let i = 0; i < raw.length; i++) {
    let v = raw[i];
    if (v < lo) v = lo;
    else if (v > hi) v = hi;
    out[i] = (v - n.mean) * inv;
  }
  return out;
}
