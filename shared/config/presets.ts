// Presets: the research's four reference configurations (design.md) and the synthetic kinds
// whose models ship in models/. Research model files are not shipped: point `models.*` at your
// own exported nnU-Net networks (with sidecars) in a config file that extends the preset.
import type { Vec3 } from '../geometry/box.ts';
import type { TesseraConfig } from './config.ts';
import { DEFAULTS } from './config.ts';
import { deepMerge } from './schema.ts';

type Preset = Omit<TesseraConfig, 'io' | 'inference' | 'select' | 'stage2' | 'output' | 'mode' | 'pack' | 'nats' | 'stage1'> & {
  stage1: Omit<TesseraConfig['stage1'], 'block'> & Partial<Pick<TesseraConfig['stage1'], 'block'>>;
  pack: Omit<TesseraConfig['pack'], 'chunks' | 'gap' | 'block' | 'contextFit'> & Partial<Pick<TesseraConfig['pack'], 'chunks' | 'gap' | 'block' | 'contextFit'>>;
  select: Partial<TesseraConfig['select']>;
  io?: Partial<TesseraConfig['io']>;
  stage2?: Partial<TesseraConfig['stage2']>;
};

const EM_RESEARCH = (name: string, stage1Patch: TesseraConfig['stage1']['patch']): Preset => ({
  name,
  spacing: [40, 4, 4],
  unit: 'nanometer',
  models: { fullres: `models/${name}-fullres.onnx`, lowres: `models/${name}-lowres.onnx` },
  io: { chunk: [96, 1024, 1024], outputChunk: [24, 256, 256] },
  baseline: { patch: [24, 256, 256], step: 0.5, mirror: true },
  stage1: { spacing: [40, 20, 20], patch: stage1Patch, step: 0.5, mirror: true },
  boxes: {
    priorDownsample: [3, 16, 16], pooling: 'max', roiThreshold: 0.001, axisThr: 4, areaThr: 6, margin: [0, 0, 0],
    nmsThreshold: 0.75, nmmThreshold: 0.35, metric: 'iou', mode: 'auto', recrop: [12, 128, 128], cropThreshold: [12, 128, 128],
  },
  select: { lambda: 0.03, featurePooling: 'max' },
  pack: { canvas: [24, 256, 256], crop: [12, 128, 128], heuristic: 'jigsaw', postprocess: 'crop_and_resize', maxPerCanvas: 0, fill: 'zero', context: [0, 0, 0] },
  // The same test-time augmentation in both modes: a two-stage run without the baseline's 8×
  // mirroring would be a free 8× in any comparison.
  stage2: { mirror: true },
});

/**
 * The research presets give their stage-one and stage-two blocks in voxels — the blocks their own
 * `io.chunk` makes (round(stage-one factor) chunks, `pack.chunks` chunks) — so on the large real
 * volumes they are for, `io.chunk` can be sized for memory and I/O alone: any io.chunk that
 * divides the blocks gives the same boxes and bit-identical output (one that does not is refused
 * naming the block). The synthetic presets keep blocks in chunks: the tests and the bench vary
 * io.chunk on them to exercise other block layouts.
 */
function blocksInVoxels(p: Preset): Preset {
  const chunk = p.io!.chunk!;
  const factor = p.stage1.spacing.map((s, a) => Math.max(1, Math.round(s / p.spacing[a])));
  const perPack = p.pack.chunks ?? DEFAULTS.pack.chunks;
  return {
    ...p,
    stage1: { ...p.stage1, block: chunk.map((c, a) => c * factor[a]) as unknown as Vec3 },
    pack: { ...p.pack, block: chunk.map((c, a) => c * perPack[a]) as unknown as Vec3 },
  };
}

const RAW: Record<string, Preset> = {
  cremi: blocksInVoxels(EM_RESEARCH('cremi', [32, 160, 160])),
  // FAFB's bounding box is ≈ 16× its neuropil: give a tissue mask (`--mask`, or `mask` in a
  // config extending this preset, as deploy/k8s/overlays/fafb/config.json does with a placeholder
  // path). Not set here: no path is right on every machine, and a preset must open anywhere.
  fafb: blocksInVoxels(EM_RESEARCH('fafb', [80, 160, 160])),
  covid: blocksInVoxels({
    name: 'covid',
    spacing: [1.5, 0.684, 0.684],
    unit: 'millimeter',
    models: { fullres: 'models/covid-fullres.onnx', lowres: 'models/covid-lowres.onnx' },
    io: { chunk: [168, 384, 384], outputChunk: [56, 192, 192] },
    baseline: { patch: [56, 192, 192], step: 0.5, mirror: false },
    stage1: { spacing: [2.71, 1.39, 1.39], patch: [64, 96, 96], step: 0.5, mirror: false },
    boxes: {
      priorDownsample: [10, 16, 16], pooling: 'max', roiThreshold: 0.5, axisThr: 0, areaThr: 0, margin: [0, 0, 0],
      nmsThreshold: 0.7, nmmThreshold: 0.2, metric: 'iou', mode: 'auto', recrop: [56, 96, 96], cropThreshold: [56, 96, 96],
    },
    select: { lambda: 0.05, featurePooling: 'max' },
    pack: { canvas: [56, 192, 192], crop: [56, 96, 96], heuristic: 'jigsaw', postprocess: 'crop_and_resize', maxPerCanvas: 0, fill: 'zero', context: [0, 0, 0] },
  }),
  word: blocksInVoxels({
    name: 'word',
    spacing: [3.0, 0.977, 0.977],
    unit: 'millimeter',
    models: { fullres: 'models/word-fullres.onnx', lowres: 'models/word-lowres.onnx' },
    io: { chunk: [128, 384, 320], outputChunk: [64, 192, 160] },
    baseline: { patch: [64, 192, 160], step: 0.5, mirror: false },
    stage1: { spacing: [6, 4, 4], patch: [96, 128, 128], step: 0.5, mirror: false },
    boxes: {
      priorDownsample: [3, 3, 3], pooling: 'mean', roiThreshold: 0.9, axisThr: 0, areaThr: 0, margin: [0, 0, 0],
      nmsThreshold: 0.55, nmmThreshold: 0.5, metric: 'iou', mode: 'auto', recrop: [64, 74, 74], cropThreshold: [64, 74, 74],
    },
    select: { lambda: 0.1275, featurePooling: 'mean' },
    pack: { canvas: [288, 64, 64], crop: [64, 64, 64], heuristic: 'grid', postprocess: 'crop_and_resize', maxPerCanvas: 0, fill: 'zero', context: [0, 0, 0] },
  }),
  // The synthetic presets are tuned on seeds 21, 22 (EM) and 23, 24 (CT), never on the benchmark
  // volume (bench/tune.ts, bench/tune-*.md): objects are small and sparse, so boxes are tight
  // (cells of one stage-one voxel, a small margin), packed at one scale with real context around
  // each box that is read but never pasted back. Their stage-two nets are local (batch norm folded
  // into the convs), so crops can sit edge to edge with in-plane context only: 16×144×144
  // canvases hold four 16×64×64 re-crop children with 4 voxels of context each (bench/isolation-*.md).
  'synthetic-em': {
    name: 'synthetic-em',
    spacing: [40, 4, 4],
    unit: 'nanometer',
    // Stage one runs at 32×128×128 on a network trained at 16×64×64 (fewer tile borders).
    models: { fullres: 'models/synthetic-em-fullres.onnx', lowres: 'models/synthetic-em-lowres.onnx', allowOtherPatch: true },
    io: { chunk: [32, 512, 512], outputChunk: [16, 128, 128] },
    baseline: { patch: [16, 128, 128], step: 0.5, mirror: false },
    stage1: { spacing: [40, 16, 16], patch: [32, 128, 128], step: 0.5, mirror: false },
    boxes: {
      priorDownsample: [1, 1, 1], pooling: 'max', roiThreshold: 0.1, axisThr: 0, areaThr: 0, margin: [1, 4, 4],
      nmsThreshold: 0.75, nmmThreshold: 0.2, metric: 'iou', mode: 'auto', recrop: [16, 64, 64], cropThreshold: [16, 128, 128],
    },
    select: { lambda: 0.03, featurePooling: 'max' },
    // nmmThreshold 0.2 and crop 3×32×32 from bench/tune-em.md (fewer canvases, Dice within 0.001; together too).
    pack: { canvas: [16, 144, 144], crop: [3, 32, 32], heuristic: 'scale', postprocess: 'crop_and_resize', maxPerCanvas: 0, fill: 'zero', context: [0, 4, 4], contextFit: 'clip' },
  },
  'synthetic-ct': {
    name: 'synthetic-ct',
    spacing: [2.5, 0.8, 0.8],
    unit: 'millimeter',
    // Stage one at 32×96×96 (trained 32×64×64), canvases of 16×144×144 (trained 16×64×64).
    models: { fullres: 'models/synthetic-ct-fullres.onnx', lowres: 'models/synthetic-ct-lowres.onnx', allowOtherPatch: true },
    io: { chunk: [32, 384, 384], outputChunk: [16, 128, 128] },
    baseline: { patch: [32, 96, 96], step: 0.5, mirror: false },
    stage1: { spacing: [2.5, 3.2, 3.2], patch: [32, 96, 96], step: 0.5, mirror: false },
    boxes: {
      priorDownsample: [1, 1, 1], pooling: 'max', roiThreshold: 0.03, axisThr: 0, areaThr: 0, margin: [1, 4, 4],
      nmsThreshold: 0.7, nmmThreshold: 0.2, metric: 'iou', mode: 'auto', recrop: [16, 64, 64], cropThreshold: [16, 128, 128],
    },
    select: { lambda: 0.05, featurePooling: 'max' },
    // crop 3×12×12 from bench/tune-ct.md (21.5 canvases for 22.5 on the tuning seeds, Dice −0.0008).
    pack: { canvas: [16, 144, 144], crop: [3, 12, 12], heuristic: 'scale', postprocess: 'crop_and_resize', maxPerCanvas: 0, fill: 'zero', context: [0, 4, 4], contextFit: 'clip' },
  },
};

export const PRESET_NAMES = Object.keys(RAW);

/** A preset merged over the defaults (not yet validated: loadConfig does that). */
export function preset(name: string): TesseraConfig | undefined {
  const p = RAW[name];
  return p ? deepMerge(DEFAULTS as unknown as TesseraConfig, p) : undefined;
}
