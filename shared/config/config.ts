// The one typed, validated run configuration. Defaults live here and only here; presets
// (presets.ts) and config files override them; everything is validated against SCHEMA before
// any work starts, and every error names the dotted key at fault.
import type { Vec3 } from '../geometry/box.ts';
import type { Field } from './schema.ts';

export type Mode = 'one-stage' | 'two-stage';

export interface TesseraConfig {
  /** Preset or config name, recorded in run.json. */
  name: string;
  mode: Mode;
  /** Voxel size of the full-resolution input, [z, y, x], in `unit` (used when the input has no NGFF scale). */
  spacing: Vec3;
  unit: string;
  models: { fullres: string; lowres: string; allowOtherPatch?: boolean };
  io: {
    chunk: Vec3;
    outputChunk: Vec3;
    pad: 'mirror' | 'constant';
    padValue: number;
    concurrency: number;
    chunksInFlight: number;
    readCache: number;
    missingChunks: 'fail' | 'fill';
    mergeFanIn: Vec3;
    lockStale: number;
    /** Inputs by URL (https://, s3://, gs://). */
    remote: { requests: number; timeout: number; tries: number };
    s3: { endpoint?: string; region?: string };
  };
  inference: {
    provider: 'cpu' | 'cuda' | 'tensorrt' | 'webgpu';
    threads: number;
    intraOpThreads: number;
    batch: number;
  };
  baseline: { patch: Vec3; step: number; mirror: boolean };
  stage1: { spacing: Vec3; patch: Vec3; step: number; mirror: boolean; block: Vec3 };
  boxes: {
    priorDownsample: Vec3;
    pooling: 'max' | 'mean';
    roiThreshold: number;
    axisThr: number;
    areaThr: number;
    margin: Vec3;
    nmsThreshold: number;
    nmmThreshold: number;
    metric: 'iou' | 'ios';
    mode: 'parents' | 'children' | 'auto';
    recrop: Vec3;
    cropThreshold: Vec3;
  };
  select: { policy: 'all' | 'score' | 'spatial'; maxBoxes: number; lambda: number; featurePooling: 'max' | 'mean' };
  pack: {
    canvas: Vec3;
    crop: Vec3;
    heuristic: 'grid' | 'scale' | 'jigsaw';
    postprocess: 'resize' | 'crop_and_resize';
    maxPerCanvas: number;
    fill: 'zero' | 'min' | 'context';
    context: Vec3;
    contextFit: 'split' | 'clip';
    gap: Vec3;
    chunks: Vec3;
    block: Vec3;
  };
  stage2: { mirror: boolean; background: 'zero' | 'stage1' };
  output: { probabilities: boolean; format: 'zarr-v2' | 'zarr-v3-sharded' };
  nats: { inFlight: number; batch: number; batchSeconds: number; ackWait: number; maxDeliver: number; duplicateWindow: number; lease: number };
  /** Tissue mask (loadConfig turns a bare path into `{ path }`, resolved). */
  mask?: { path: string; level?: string };
}

const vec = (doc: string, min = 1): Field => ({ type: 'vec3', min, doc });
const ivec = (doc: string, min = 1): Field => ({ type: 'vec3', min, int: true, doc });
const num = (doc: string, min?: number, max?: number): Field => ({ type: 'number', min, max, doc });
const int = (doc: string, min?: number, max?: number): Field => ({ type: 'number', min, max, int: true, doc });
const en = (values: readonly string[], doc: string): Field => ({ type: 'enum', values, doc });
const bool = (doc: string): Field => ({ type: 'boolean', doc });
const obj = (doc: string, fields: Record<string, Field>): Field => ({ type: 'object', doc, fields });

export const SCHEMA: Field = obj('Tessera run configuration', {
  name: { type: 'string', doc: 'Preset or config name, recorded in run.json.' },
  mode: en(['one-stage', 'two-stage'], '`one-stage`: nnU-Net sliding window at full resolution (the baseline). `two-stage`: stage one → boxes → select → pack → stage two. @default "two-stage"'),
  spacing: vec('Full-resolution voxel size [z, y, x] in `unit`; the input\'s NGFF scale wins when present.', 0),
  unit: { type: 'string', doc: 'Unit of every spacing: "nanometer" (EM) or "millimeter" (CT).' },
  models: obj('ONNX models (paths relative to the config file, or to the Tessera package for presets); each needs its JSON sidecar.', {
    fullres: { type: 'string', doc: 'Full-resolution model: the baseline at `baseline.patch`, stage two on canvases.' },
    lowres: { type: 'string', doc: 'Low-resolution model for stage one, trained at `stage1.spacing`.' },
    allowOtherPatch: { type: 'optional', of: bool(''), doc: 'Run a network at a patch other than the training patch its card states (`stage1.patch`, `pack.canvas`, `baseline.patch`). Fully convolutional networks accept other sizes, but their statistics (instance normalisation, border effects) differ from training, so it is refused unless set. @default false' },
  }),
  io: obj('Chunking and Zarr I/O.', {
    chunk: ivec('Processing chunk (write box) in full-resolution voxels; a multiple of `io.outputChunk`. Memory per chunk in flight grows with it. @default [64, 512, 512]'),
    outputChunk: ivec('Storage chunk of the output arrays. @default [16, 128, 128]'),
    pad: en(['mirror', 'constant'], 'How reads past the volume border are filled. @default "mirror"'),
    padValue: num('Fill value for `constant` padding (raw intensity). @default 0'),
    concurrency: int('Storage chunk requests in flight per read or write. @default 8', 1, 256),
    chunksInFlight: int('Processing chunks worked on at once (I/O of one overlaps compute of another). @default 2', 1, 64),
    readCache: int('Decoded input (MiB) that a process\'s stage-two tasks share in one storage-chunk cache, so boxes sharing a storage chunk decode it once; read amplification (decoded / needed voxels, in the report) rises when it is too small for two stage-two blocks\' chunks (EM bench: 64 MiB → 6.3 on the default volume, 128 and 256 → 4.24). @default 128', 1, 65536),
    mergeFanIn: ivec('Instance ids: chunks per axis whose objects one merge task joins (a region of the reduction; level l joins fanIn^l chunks). Every task of the reduction holds what crosses its region\'s surface, never the volume; fewer levels mean fewer, larger tasks. Does not change the output. @default [4, 4, 4]', 2),
    lockStale: num('Seconds after which an output\'s lock whose holder has not written its heartbeat (every `lockStale` / 6 s) counts as stale and is taken over; the process that held it is then fenced (it stops before its next write). Does not change the output. @default 60', 1, 86400),
    remote: obj('Inputs by URL (`https://`, `http://`, `s3://bucket/prefix`, `gs://bucket/prefix`): requests, timeouts, retries. None of these change the output.', {
      requests: int('Requests in flight at once per process (all reads of one input share them). @default 64', 1, 4096),
      timeout: num('Seconds one request (headers and body) may take before it is abandoned and tried again. @default 30', 0.1, 3600),
      tries: int('Tries per request before giving up with an error naming the URL and the key: 5xx, 429, 503 SlowDown, timeouts and connection resets are tried again after an exponential backoff with jitter (0.1 s doubling to 10 s); 403, 404 and other 4xx are not. @default 6', 1, 100),
    }),
    s3: obj('The S3 API for `s3://` inputs. Credentials come from the standard AWS chain (environment, shared profile, web identity), never from the config.', {
      endpoint: { type: 'optional', of: { type: 'string', doc: '' }, doc: 'Endpoint URL for an S3-compatible store (MinIO, Ceph, GCS interoperability: `https://storage.googleapis.com`), addressed path-style. @default the `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` environment variable, else AWS' },
      region: { type: 'optional', of: { type: 'string', doc: '' }, doc: 'Region the requests are signed for. @default `AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1' },
    }),
    missingChunks: en(['fail', 'fill'], 'An input storage chunk with no file: `fail` fails the tasks that read it, naming the chunk (a deleted chunk read as the fill value gives a wrong result that looks complete); `fill` reads the fill value and counts it in the report (sparse volumes such as FAFB, whose empty chunks were never written; `--allow-missing`), and a task with no stored input chunk anywhere in its reach (the tissue mask\'s reach, docs/design.md) is skipped as background without running a network, counted in the report\'s `inputMissingSkipped`. @default "fail"'),
  }),
  inference: obj('ONNX Runtime.', {
    provider: en(['cpu', 'cuda', 'tensorrt', 'webgpu'], 'Execution provider; falls back to cpu with a warning when missing. @default "cpu"'),
    threads: int('Inference worker threads (each holds one session per model); on CPU, threads × intraOpThreads ≈ cores. @default 2', 1, 64),
    intraOpThreads: int('ONNX Runtime intra-op threads per inference thread. @default 1', 1, 256),
    batch: int('Patches (or canvases) per network call. @default 2', 1, 256),
  }),
  baseline: obj('One-stage baseline: nnU-Net sliding window at full resolution.', {
    patch: ivec('Patch size; divisible by the full-resolution model\'s divisor.'),
    step: num('Step as a fraction of the patch. @default 0.5', 0.05, 1),
    mirror: bool('Mirroring test-time augmentation (8 flips). @default false'),
  }),
  stage1: obj('Stage one: the low-resolution model over the whole region.', {
    spacing: vec('Stage-one resolution [z, y, x] in `unit`; the NGFF pyramid level with this spacing is read when present, else the full resolution is area-averaged on the fly.', 0),
    patch: ivec('Stage-one patch size (stage-one voxels).'),
    step: num('Step as a fraction of the patch. @default 0.5', 0.05, 1),
    mirror: bool('Mirroring TTA in stage one. @default false'),
    block: ivec('The stage-one block in full-resolution voxels [z, y, x]: a multiple of `io.chunk` along every axis (refused otherwise). Stage one runs per block (its sliding window over the block and half a patch around it), cuts candidate regions at block borders and the boxes task plans per block, so with a block set here every `io.chunk` that divides it gives the same heatmap, the same boxes and (with `pack.block`) the same output. [0, 0, 0]: blocks of round(stage-one factor) chunks per axis. @default [0, 0, 0]', 0),
  }),
  boxes: obj('Heatmap → candidate boxes ("extract"), NMS and non-maximum merging.', {
    priorDownsample: ivec('Pooling grid in stage-one voxels on which the heatmap is pooled into candidate cells (research key `prior_downsample`).'),
    pooling: en(['max', 'mean'], 'How a cell pools its heatmap values (research key `feature pooling`). @default "max"'),
    roiThreshold: num('A cell is a candidate when its pooled heat exceeds this (research key `roi_threshold`).', 0, 1),
    axisThr: int('Minimum extent of a region, in cells, along its longest axis; 0 keeps all (research key `axis_thr`).', 0),
    areaThr: int('Minimum number of cells in a region\'s largest cross-section; 0 keeps all (research key `area_thr`).', 0),
    margin: ivec('Full-resolution voxels added on every side of a region\'s box. @default [0, 0, 0]', 0),
    nmsThreshold: num('Non-maximum suppression: a box matching a higher-scoring kept box above this is dropped (research key `nms`).', 0, 1),
    nmmThreshold: num('Non-maximum merging: boxes matching above this merge into one parent (union) (research key `nmm`).', 0, 1),
    metric: en(['iou', 'ios'], 'Match metric of NMS/NMM: intersection over union or over the smaller box. @default "iou"'),
    mode: en(['parents', 'children', 'auto'], '`parents`: merged boxes go to stage two whole; `children`: every parent is re-cropped into `recrop`-sized children; `auto`: parents larger than `cropThreshold` are re-cropped. @default "auto"'),
    recrop: ivec('Size of the children a parent is re-cropped into (research key `nmm_recrop`).'),
    cropThreshold: ivec('Largest box stage two takes without re-cropping or resizing (research key `crop_threshold`).'),
  }),
  select: obj('Select and order boxes for stage two ("filter", "sort").', {
    policy: en(['all', 'score', 'spatial'], '`all`: every box in discovery order; `score`: by heatmap mass, best first; `spatial`: neighbours consecutive so they share canvases. @default "spatial"'),
    maxBoxes: int('Keep at most this many boxes per chunk; 0 = no limit. @default 0', 0),
    lambda: num('Cost weight λ of the learned selection policy (research key `selection λ`; used by learned policies only).', 0),
    featurePooling: en(['max', 'mean'], 'Pooling of U-Net features into per-box feature vectors for learned policies. @default "max"'),
  }),
  pack: obj('Canvas packing ("stitch").', {
    canvas: ivec('Canvas shape fed to the full-resolution model; divisible by its divisor.'),
    crop: ivec('Slot (crop) shape of the grid and jigsaw heuristics; the stage-two patch.'),
    heuristic: en(['grid', 'scale', 'jigsaw'], '`grid`: same-size slots; `scale`: variable-size crops at one scale, 3D bin packing; `jigsaw`: neighbouring crops keep their relative placement (real context instead of padding). @default "jigsaw"'),
    postprocess: en(['resize', 'crop_and_resize'], 'Crops larger than a slot: `resize` shrinks the whole box into the slot; `crop_and_resize` crops to `boxes.cropThreshold` pieces first. @default "crop_and_resize"'),
    maxPerCanvas: int('Crops per canvas at most; 0 = as many as fit (the 1/4/8 ablation). @default 0', 0),
    context: ivec('Voxels of real volume read around every box into its canvas but never pasted back: the network sees context, the box edges are predicted like its interior. @default [0, 0, 0]', 0),
    contextFit: en(['split', 'clip'], 'A box that fits the canvas but not with its `context`: `split` keeps the context and packs the box as canvas-long pieces (each alone in its canvas along that axis); `clip` cuts the context along that axis to what fits, so the box packs whole (CT tuning seeds: a third fewer canvases at equal Dice; EM: a quarter fewer for −0.004 to −0.007 Dice, the 16-deep re-cropped children losing their section of context above and below). @default "split"'),
    gap: ivec('Scale packing: voxels of fill kept between any two crops of a canvas (on top of each crop\'s `context`), so that what the network sees of a crop\'s neighbours lies farther from what is pasted. Grid and jigsaw slots do not use it. @default [0, 0, 0]', 0),
    chunks: ivec('Chunks [z, y, x] whose boxes share canvases (one stage-two task): more fills canvases better when boxes are few per chunk; canvases never hold boxes from farther apart. Packing depends only on the boxes of this block, so two `io.chunk` sizes with the same `io.chunk × pack.chunks` pack the same boxes into the same canvases. @default [1, 2, 2]'),
    block: ivec('The stage-two block in voxels [z, y, x], instead of `pack.chunks`: a multiple of `io.chunk` along every axis (refused otherwise). Canvases depend only on the boxes of a block, so with a block set here every `io.chunk` that divides it packs the same boxes into the same canvases. [0, 0, 0]: blocks of `pack.chunks` chunks. @default [0, 0, 0]', 0),
    fill: en(['zero', 'min', 'context'], 'Canvas voxels no crop covers: `zero` = 0 after normalisation (the global mean intensity); `min` = the normalised value of raw intensity 0 (dark, like outside a scan); `context` = real volume around the nearest crop (each such voxel reads the volume where the nearest crop\'s surroundings would put it), so the network sees tissue between crops and the canvas is normalised like a tile of the volume; never pasted back. Slots of the grid and jigsaw heuristics are filled with real volume context around small crops first. @default "zero"'),
  }),
  stage2: obj('Stage two and paste-back.', {
    mirror: bool('Mirroring TTA on canvases. @default false'),
    background: en(['zero', 'stage1'], 'Voxels no crop covers: background, or the upsampled stage-one prediction. @default "zero"'),
  }),
  output: obj('What the output group holds besides segmentation/0.', {
    probabilities: bool('Also write probabilities/0 (float32 foreground probability). @default false'),
    format: en(['zarr-v2', 'zarr-v3-sharded'], '`zarr-v2`: NGFF 0.4, one file per storage chunk (`io.outputChunk`); opens in Zarr v2 readers. `zarr-v3-sharded`: NGFF 0.5, one shard file per chunk (`io.chunk`) with inner chunks of `io.outputChunk` — for runs whose storage chunks would number in the millions (FAFB: ≈ 10⁹ files otherwise). @default "zarr-v2"'),
  }),
  mask: {
    type: 'optional',
    doc: 'Tissue mask (`--mask`): a path, or `{ "path", "level" }`. An NGFF image group (level `"0"` read unless `level` names another) or a bare Zarr array, uint8 or bool, nonzero = tissue, at a voxel size that is a whole multiple of the input\'s (the NGFF scale says which; a bare array\'s factor comes from the shapes). Tasks whose reach holds no tissue are skipped and their output is background; voxels outside the mask are background everywhere (docs/design.md, "Tissue masks"). A relative path is relative to the config file (to the working directory for `--mask`). Part of the run identity. @default none',
    of: {
      type: 'either', expect: 'a path or { "path": …, "level": … }', doc: '',
      of: [
        { type: 'string', doc: '' },
        obj('', {
          path: { type: 'string', doc: 'The mask\'s path (NGFF group or bare array).' },
          level: { type: 'optional', of: { type: 'string', doc: '' }, doc: 'The NGFF dataset to read. @default "0"' },
        }),
      ],
    },
  },
  nats: obj('Distributed runs (`--nats`): how the coordinator and workers use JetStream. Speed and fault handling only: never part of the run identity.', {
    inFlight: int('Tasks published and not yet finished, at most (the bounded queue); a few × the tasks all workers run at once. @default 256', 1, 100000),
    batch: int('Tasks of one kind per message, at most. Quick tasks travel together: the coordinator sizes each kind\'s messages to about `batchSeconds` of work from the task times measured so far (one task per message until it knows), and never above `inFlight` / 8 so that several workers share the work. A message is delivered, acknowledged and redelivered whole. 1: one task per message. @default 64', 1, 1024),
    batchSeconds: num('Work per message the coordinator aims at when it puts quick tasks together (see `batch`). @default 1', 0),
    ackWait: int('Seconds without a heartbeat before a task is handed to another worker (workers send one every ackWait/3 while a task runs). @default 60', 1, 3600),
    maxDeliver: int('Deliveries of a task before it is recorded as failed (a worker crash on it counts as one). @default 3', 1, 100),
    duplicateWindow: int('Seconds JetStream remembers a message id, so a publish retried after a lost acknowledgement is not queued twice. @default 120', 1, 86400),
    lease: int('Seconds a coordinator\'s lease on its run (KV bucket `tessera-leases`) lasts without a heartbeat (one every lease/3): another coordinator takes a lease this stale over, and the old one stops without writing once it finds out. Longer rides out longer pauses (GC, a suspended VM); shorter fails over sooner. @default 30', 1, 3600),
  }),
});

export const DEFAULTS: Omit<TesseraConfig, 'name' | 'spacing' | 'unit' | 'models' | 'baseline' | 'stage1' | 'boxes' | 'pack'> & {
  baseline: Pick<TesseraConfig['baseline'], 'step' | 'mirror'>;
  stage1: Pick<TesseraConfig['stage1'], 'step' | 'mirror' | 'block'>;
  boxes: Pick<TesseraConfig['boxes'], 'pooling' | 'margin' | 'metric' | 'mode'>;
  pack: Pick<TesseraConfig['pack'], 'heuristic' | 'postprocess' | 'maxPerCanvas' | 'fill' | 'context' | 'contextFit' | 'gap' | 'chunks' | 'block'>;
} = {
  mode: 'two-stage',
  io: { chunk: [64, 512, 512], outputChunk: [16, 128, 128], pad: 'mirror', padValue: 0, concurrency: 8, chunksInFlight: 2, readCache: 128, missingChunks: 'fail', mergeFanIn: [4, 4, 4], lockStale: 60, remote: { requests: 64, timeout: 30, tries: 6 }, s3: {} },
  inference: { provider: 'cpu', threads: 2, intraOpThreads: 1, batch: 2 },
  baseline: { step: 0.5, mirror: false },
  stage1: { step: 0.5, mirror: false, block: [0, 0, 0] },
  boxes: { pooling: 'max', margin: [0, 0, 0], metric: 'iou', mode: 'auto' },
  select: { policy: 'spatial', maxBoxes: 0, lambda: 0, featurePooling: 'max' },
  pack: { heuristic: 'jigsaw', postprocess: 'crop_and_resize', maxPerCanvas: 0, fill: 'zero', context: [0, 0, 0], contextFit: 'split', gap: [0, 0, 0], chunks: [1, 2, 2], block: [0, 0, 0] },
  stage2: { mirror: false, background: 'zero' },
  output: { probabilities: false, format: 'zarr-v2' },
  nats: { inFlight: 256, batch: 64, batchSeconds: 1, ackWait: 60, maxDeliver: 3, duplicateWindow: 120, lease: 30 },
};
