// What one run needs, opened once: the validated config, model cards, the input source, the
// inference pool and its Model views, the output arrays, timings and the logger.
import { type Box, type Vec3, boxOfShape, contains, boxToString } from '../geometry/box.ts';
import type { TesseraConfig } from '../config/config.ts';
import { type Cards, checkModels } from '../config/load.ts';
import { type Source, source } from '../volume/source.ts';
import { openImage } from '../volume/ome.ts';
import { RemoteClient, isRemote } from '../volume/remote.ts';
import { INPUT_DTYPES } from '../volume/dtype.ts';
import { type PoolModel, InferencePool } from '../infer/thread.ts';
import type { Model, ModelCard } from '../infer/model.ts';
import type { Logger } from '../log.ts';
import { Timings } from './timings.ts';
import { ConfigError, InputError } from '../errors.ts';
import { type TissueMask, openMask } from '../volume/mask.ts';

export interface RunContext {
  readonly config: TesseraConfig;
  readonly cards: Cards;
  readonly src: Source;
  readonly roi: Box;
  readonly pool: InferencePool;
  readonly fullres: Model;
  readonly lowres?: Model;
  readonly timings: Timings;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** Input storage chunks read as the fill value because their file is missing (io.missingChunks "fill"). */
  readonly missing: { missing: number };
  /** The tissue mask (config `mask`, `--mask`): tasks with no tissue in reach are skipped (tasks/mask.ts). */
  readonly mask?: TissueMask;
}

export interface OpenOptions {
  config: TesseraConfig;
  input: string;
  roi?: Box;
  log: Logger;
  signal?: AbortSignal;
  /**
   * `eager`: load the models before returning (the embedded runner: load errors before any
   * work). `lazy`: on the first inference (services that may never run a network).
   * @default 'eager'
   */
  models?: 'eager' | 'lazy';
}

/** Everything checked before any work: config vs models, input dtype/shape/spacing, ROI. */
export async function openRun(o: OpenOptions): Promise<RunContext> {
  const c = o.config;
  const cards = checkModels(c);
  const missing = { missing: 0 };
  const remote = isRemote(o.input) ? remoteClient(c) : undefined;
  const image = await openImage(o.input, c.spacing, { missing: c.io.missingChunks, counter: missing, finite: true, ...(remote ? { remote } : {}) });
  const src = source(image, c.io.pad, c.io.padValue, { concurrency: c.io.concurrency, signal: o.signal });
  if (!INPUT_DTYPES.includes(src.full.array.dtype)) {
    throw new InputError(src.full.array.path, `dtype ${src.full.array.dtype} is not supported (use ${INPUT_DTYPES.join(', ')})`);
  }
  const vol = boxOfShape(src.shape);
  const roi = o.roi ?? vol;
  for (let a = 0; a < 3; a++) {
    const axis = 'zyx'[a];
    if (roi.end[a] <= roi.begin[a]) throw new ConfigError('roi', `${boxToString(roi)} is empty along ${axis} (${roi.begin[a]}:${roi.end[a]})`);
    if (roi.begin[a] < 0 || roi.end[a] > src.shape[a]) {
      throw new ConfigError('roi', `${boxToString(roi)} reaches outside the volume along ${axis}: ${roi.begin[a]}:${roi.end[a]} is not within 0:${src.shape[a]} (shape ${src.shape.join('x')})`);
    }
  }
  if (!contains(vol, roi)) throw new ConfigError('roi', `${boxToString(roi)} is outside the volume (shape ${src.shape.join('x')})`);
  if (!sameSpacing(src.spacing, c.spacing)) {
    throw new ConfigError('spacing', `the input's voxel size [${src.spacing}] differs from the config's [${c.spacing}] (${o.input}); resample the input or use a matching preset`);
  }
  // Opened (and checked against the input) before any model loads: a bad mask is a one-line error.
  const mask = c.mask ? await openMask(c.mask, { shape: src.shape, spacing: src.spacing }) : undefined;
  const models: Record<string, PoolModel> = { fullres: { path: c.models.fullres, input: cards.fullres.inputName, output: cards.fullres.outputName } };
  if (c.mode === 'two-stage' && cards.lowres) models.lowres = { path: c.models.lowres, input: cards.lowres.inputName, output: cards.lowres.outputName };
  const po = { provider: c.inference.provider, threads: c.inference.threads, intraOpThreads: c.inference.intraOpThreads };
  let pool: InferencePool;
  if (o.models === 'lazy') {
    pool = InferencePool.lazy(models, po, (w) => o.log.warn(w));
  } else {
    pool = await InferencePool.open(models, po);
    if (pool.warning) o.log.warn(pool.warning);
  }
  const norm = c.mode === 'two-stage' ? cards.fullres.windowNorm : undefined;
  if (norm) {
    o.log.warn({ model: c.models.fullres, op: norm }, `the stage-two network normalises over its whole input (${norm}): crops packed in one canvas change each other's output; a network with batch norm folded into its convs does not (docs/models.md)`);
  }
  const short = c.mode === 'two-stage' ? contextShort(c.pack.context, cards.fullres.reach) : undefined;
  if (short) {
    o.log.info({ model: c.models.fullres, reach: cards.fullres.reach, context: c.pack.context }, `stage two's network reaches ${short} voxels around each output voxel (z, y, x; its card's reach); crops get pack.context [${c.pack.context}], so a crop's border voxels see canvas fill or neighbours there where a sliding window shows them the volume — cheaper, and less exact near crop borders on some data: compare with one-stage on a small --roi (tessera eval --pred) before a large run`);
  }
  return {
    config: c,
    cards,
    src,
    roi,
    pool,
    fullres: pool.model('fullres', cards.fullres),
    lowres: cards.lowres ? pool.model('lowres', cards.lowres) : undefined,
    timings: new Timings(),
    missing,
    ...(mask ? { mask } : {}),
    log: o.log,
    signal: o.signal,
  };
}

/** The client a URL input is read through, as the config's io.remote and io.s3 say. */
export function remoteClient(c: TesseraConfig): RemoteClient {
  const r = c.io.remote;
  return new RemoteClient({ requests: r.requests, timeout: r.timeout, tries: r.tries, ...(c.io.s3.endpoint ? { s3Endpoint: c.io.s3.endpoint } : {}), ...(c.io.s3.region ? { s3Region: c.io.s3.region } : {}) });
}

function sameSpacing(a: Vec3, b: Vec3): boolean {
  return a.every((x, i) => Math.abs(x - b[i]) <= 0.01 * Math.max(x, b[i]));
}

/** The network's reach as text ("7, 37, 37", "≥ 16, …"), when some axis gets less context than it; else undefined. */
function contextShort(context: Vec3, reach: ModelCard['reach']): string | undefined {
  if (!reach || !reach.voxels.some((r, a) => context[a] < r)) return undefined;
  return `${reach.atLeast ? 'at least ' : ''}${reach.voxels.join(', ')}`;
}
