// `npm run bench` / `tessera bench`: one-stage vs two-stage on a synthetic volume, measured in
// one run on this machine, with the quality of both, the threshold baseline, the boxes' recall,
// the stage-two oracle, peak memory on the default volume and one 4× larger, the dependence of
// a crop's prediction on its canvas neighbours, and (with --ablations) the research's
// ablations. Every run is a child process (`tessera run --json`) so peak memory is its own.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Vec3 } from '../shared/geometry/box.ts';
import { boxOfShape } from '../shared/geometry/box.ts';
import { readRegion, openArray } from '../shared/volume/zarr.ts';
import { type BoxRecall, boxRecall as recallOfBoxes } from '../shared/metrics/recall.ts';
import { readBoxTargets } from '../shared/tasks/boxes-output.ts';
import { bestThresholdDice } from '../shared/metrics/threshold.ts';
import { isInstanceKind } from '../shared/tasks/graph.ts';
import { evaluateOutput, type EvalReport } from '../shared/run/eval.ts';
import { writeSynth } from '../shared/run/synth.ts';
import type { RunReport } from '../shared/run/embedded.ts';
import type { Array3 } from '../shared/array/array3.ts';
import { linePlot } from './png.ts';
import { loadConfig } from '../shared/config/load.ts';
import { measureCanvasEffect, type CanvasEffect } from './canvas-effect.ts';
import { PACKAGE_ROOT } from '../shared/config/load.ts';

const exec = promisify(execFile);
const CLI = path.join(PACKAGE_ROOT, 'bin', 'tessera.mjs');

export interface BenchOptions {
  kind?: 'em' | 'ct';
  shape?: Vec3;
  seed?: number;
  fg?: number;
  dir?: string;
  json?: string;
  ablations?: boolean;
  quick?: boolean;
}

export const DEFAULT_SHAPE: Record<'em' | 'ct', Vec3> = { em: [64, 768, 768], ct: [64, 512, 512] };
const QUICK_SHAPE: Vec3 = [32, 256, 256];
/** The sharded copy of the bench volume: inner chunks near a box's size, shards of the default chunk. */
const SHARDED_INNER: Vec3 = [4, 16, 16];
const SHARDED_SHARD: Vec3 = [16, 128, 128];

interface Scored {
  run: RunReport;
  eval: EvalReport['perClass'][string];
}

/**
 * The 4× volume: EM grows in y and x (FAFB is 376k × 302k × 7k); CT in z, as CT volumes do
 * (scans are 512² in-plane, with more or fewer slices). CT's stage-one block spans 1536² in
 * plane, larger than both 512² and 1024², so an in-plane 4× would only grow the one block —
 * memory is bounded by the block, not the volume, and only more blocks show it.
 */
function largeShape(kind: 'em' | 'ct', s: Vec3): Vec3 {
  return kind === 'ct' ? [s[0] * 4, s[1], s[2]] : [s[0], s[1] * 2, s[2] * 2];
}

function tta(preset: string): { baseline: boolean; stage1: boolean; stage2: boolean } {
  const c = loadConfig({ preset });
  return { baseline: c.baseline.mirror, stage1: c.stage1.mirror, stage2: c.stage2.mirror };
}

const say = (s: string) => process.stderr.write(s + '\n');

/** One `tessera run --json` in a child process (its own peak memory), config = preset + overrides. */
export async function run(input: string, output: string, preset: string, overrides: Record<string, unknown>, extra: string[] = []): Promise<RunReport> {
  const cfg = `${output}.config.json`;
  fs.writeFileSync(cfg, JSON.stringify({ extends: preset, ...overrides }));
  const { stdout } = await exec(process.execPath, [CLI, 'run', '--input', input, '--output', output, '--config', cfg, '--json', '--overwrite', ...extra], {
    maxBuffer: 1 << 26, env: { ...process.env, TESSERA_LOG: 'warn' },
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RunReport;
}

/** A run scored against ground truth; probabilities are written so AP ranks objects by them. */
async function scored(vol: string, out: string, preset: string, overrides: Record<string, unknown>, extra: string[] = []): Promise<Scored> {
  const r = await run(vol, out, preset, { ...overrides, output: { probabilities: true } }, extra);
  const e = await evaluateOutput({ pred: out, gt: vol });
  return { run: r, eval: e.perClass['1'] };
}

/** Fraction of ground-truth objects with ≥ 90 % of their voxels inside the union of box targets. */
/** Stage one's recall of `out`'s boxes (its boxes.json) against the ground truth. */
function boxRecall(gt: Array3<Uint8Array>, out: string): BoxRecall {
  return recallOfBoxes(gt, readBoxTargets(out) ?? []);
}

/**
 * Start the same two-stage run, kill -9 it once about half its paste tasks are done, run the
 * same command again, and compare with the uninterrupted output `reference`.
 */
async function killAndResume(vol: string, out: string, preset: string, reference: string): Promise<Record<string, unknown>> {
  const cfg = `${out}.config.json`;
  fs.rmSync(out, { recursive: true, force: true });
  fs.writeFileSync(cfg, JSON.stringify({ extends: preset, mode: 'two-stage' }));
  const args = [CLI, 'run', '--input', vol, '--output', out, '--config', cfg, '--json'];
  const ref = JSON.parse(fs.readFileSync(path.join(reference, 'run.json'), 'utf8')).report as RunReport;
  const total = ref.tasks.paste.total;
  const child = spawn(process.execPath, args, { stdio: 'ignore', env: { ...process.env, TESSERA_LOG: 'warn' } });
  const log = path.join(out, '.work', 'done', 'paste.log');
  const pasted = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
  while (pasted() < Math.ceil(total / 2) && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  const before = pasted();
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const { stdout } = await exec(process.execPath, args, { maxBuffer: 1 << 26, env: { ...process.env, TESSERA_LOG: 'warn' } });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as RunReport;
  const files = (d: string) => fs.readdirSync(d, { recursive: true }).map(String).filter((f) => fs.statSync(path.join(d, f)).isFile()).sort();
  const seg = (d: string) => path.join(d, 'segmentation', '0');
  const identical = JSON.stringify(files(seg(out))) === JSON.stringify(files(seg(reference)))
    && files(seg(out)).every((f) => fs.readFileSync(path.join(seg(out), f)).equals(fs.readFileSync(path.join(seg(reference), f))));
  const reused = Object.values(r.tasks).reduce((n, t) => n + t.reused, 0);
  return { pasteTasks: total, pastedBeforeKill: before, seconds: r.seconds.total, ratio: r3(r.seconds.total / ref.seconds.total), reused, identical };
}

const r3 = (x: number) => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : x);

export async function runBench(o: BenchOptions): Promise<unknown> {
  const kind = o.kind ?? 'em';
  const shape = o.shape ?? (o.quick ? QUICK_SHAPE : DEFAULT_SHAPE[kind]);
  const seed = o.seed ?? 7;
  const fg = o.fg ?? 0.01;
  const dir = o.dir ?? 'bench-results';
  const preset = `synthetic-${kind}`;
  fs.mkdirSync(dir, { recursive: true });
  const vol = path.join(dir, `${kind}-vol.zarr`);
  say(`bench: synthesizing ${kind} ${shape.join('x')} seed ${seed} fg ${fg} → ${vol}`);
  const syn = await writeSynth({ kind, shape, seed, fg, out: vol, overwrite: true });

  const image = await readRegion(await openArray(path.join(vol, '0')), boxOfShape(shape));
  const gt = (await readRegion(await openArray(path.join(vol, 'labels', 'gt', '0')), boxOfShape(shape))) as Array3<Uint8Array>;
  const threshold = bestThresholdDice(image, gt, 1);

  say('bench: one-stage (nnU-Net sliding window over the whole volume, full resolution, step 0.5)');
  const one = await scored(vol, path.join(dir, 'one-stage.zarr'), preset, { mode: 'one-stage' });
  say(`  ${one.run.seconds.total} s, Dice ${one.eval.dice.toFixed(4)}, ${one.run.oneStage?.tiles} tiles (nnU-Net: ${one.run.oneStage?.nnunetTiles})`);
  // Without overlap: how much of the speedup is sparsity and how much the overlap nnU-Net pays.
  say('bench: one-stage at step 1.0 (no overlap)');
  const oneStep1 = await scored(vol, path.join(dir, 'one-stage-step1.zarr'), preset, { mode: 'one-stage', baseline: { step: 1 } });
  fs.rmSync(path.join(dir, 'one-stage-step1.zarr'), { recursive: true, force: true });
  say('bench: two-stage');
  const twoOut = path.join(dir, 'two-stage.zarr');
  const two = await scored(vol, twoOut, preset, { mode: 'two-stage' });
  const recall = boxRecall(gt, twoOut);
  say(`  ${two.run.seconds.total} s, Dice ${two.eval.dice.toFixed(4)}, box recall ${recall.recall.toFixed(3)}`);
  say('bench: oracle (stage two on ground-truth boxes)');
  const oracle = await scored(vol, path.join(dir, 'oracle.zarr'), preset, { mode: 'two-stage' }, ['--oracle-boxes', path.join(vol, 'labels', 'gt', '0')]);
  say('bench: canvas-neighbour effect');
  const effect: CanvasEffect = await measureCanvasEffect(vol, twoOut, preset, 64, path.join(dir, 'one-stage.zarr'));

  say('bench: kill -9 at about half way, then resume');
  const resume = await killAndResume(vol, path.join(dir, 'resumed.zarr'), preset, twoOut);

  // Read amplification is set by the input's storage layout: the same volume as Zarr v3 shards
  // with small inner chunks (what sparse reads need; FAFB-scale data should be stored so).
  say(`bench: the same volume as Zarr v3 shards (inner chunks ${SHARDED_INNER.join('×')})`);
  const volSharded = path.join(dir, `${kind}-vol-sharded.zarr`);
  await writeSynth({ kind, shape, seed, fg, out: volSharded, overwrite: true, chunks: SHARDED_INNER, shard: SHARDED_SHARD });
  const shardedOut = path.join(dir, 'two-stage-sharded.zarr');
  const shardedRun = await run(volSharded, shardedOut, preset, { mode: 'two-stage' });
  const segOf = async (d: string) => (await readRegion(await openArray(path.join(d, 'segmentation', '0')), boxOfShape(shape))).data;
  const sharded = {
    inner: SHARDED_INNER, shard: SHARDED_SHARD, seconds: shardedRun.seconds.total,
    readAmplification: r3(shardedRun.twoStage?.readAmplification ?? 0),
    identical: Buffer.from((await segOf(shardedOut)).buffer).equals(Buffer.from((await segOf(twoOut)).buffer)),
  };
  fs.rmSync(volSharded, { recursive: true, force: true });

  let large: RunReport | undefined;
  if (!o.quick) {
    const big = largeShape(kind, shape);
    const volBig = path.join(dir, `${kind}-vol-4x.zarr`);
    say(`bench: time and peak memory on a 4× volume ${big.join('x')}`);
    await writeSynth({ kind, shape: big, seed: seed + 1, fg, out: volBig, overwrite: true });
    large = await run(volBig, path.join(dir, 'two-stage-4x.zarr'), preset, { mode: 'two-stage' });
    fs.rmSync(volBig, { recursive: true, force: true });
  }

  const ablations: Array<Record<string, unknown>> = [];
  let plot: string | undefined;
  if (o.ablations) {
    // Slot-based packings need slots that fit the boxes: those ablations use 8×64×64 slots
    // (8 per canvas) and re-crop boxes bigger than a slot, as the research configurations do.
    const slots = { crop: [8, 64, 64], context: [0, 0, 0] };
    const slotBoxes = { cropThreshold: [8, 64, 64], recrop: [8, 64, 64] };
    const variants: Array<[string, Record<string, unknown>]> = [
      ['preset (scale packing, context)', {}],
      ['parents only', { boxes: { mode: 'parents' } }],
      ['children only', { boxes: { mode: 'children' } }],
      ['grid slots, resize', { pack: { ...slots, heuristic: 'grid', postprocess: 'resize' }, boxes: { cropThreshold: [8, 64, 64] } }],
      ['grid slots, crop_and_resize', { pack: { ...slots, heuristic: 'grid', postprocess: 'crop_and_resize' }, boxes: { cropThreshold: [8, 64, 64] } }],
      ['jigsaw on', { pack: { ...slots, heuristic: 'jigsaw' }, boxes: slotBoxes }],
      ['jigsaw off (grid)', { pack: { ...slots, heuristic: 'grid' }, boxes: slotBoxes }],
      ['1 crop per canvas', { pack: { ...slots, heuristic: 'jigsaw', maxPerCanvas: 1 }, boxes: slotBoxes }],
      ['4 crops per canvas', { pack: { ...slots, heuristic: 'jigsaw', maxPerCanvas: 4 }, boxes: slotBoxes }],
      ['8 crops per canvas', { pack: { ...slots, heuristic: 'jigsaw', maxPerCanvas: 8 }, boxes: slotBoxes }],
      ['policy all', { select: { policy: 'all' } }],
      ['policy score', { select: { policy: 'score' } }],
      // What isolating crops further costs (the canvas-effect lines compare with one-stage).
      ['context 2×8×8', { pack: { context: [2, 8, 8] } }],
      ['gap 2×16×16', { pack: { gap: [2, 16, 16] } }],
      // The canvas choices the presets did not take, and their packing before the stage-two nets
      // were local (bench/isolation-*.md). (contextFit split differs from clip only for a box
      // within 8 voxels of the 144 canvas side: it gave the preset's row on the bench volume.)
      ['fill context', { pack: { fill: 'context' } }],
      ['no context', { pack: { context: [0, 0, 0] } }],
      ['canvas 16×128×128, context 1×4×4', { pack: { canvas: [16, 128, 128], context: [1, 4, 4] } }],
    ];
    for (const [name, over] of variants) {
      say(`bench: ablation ${name}`);
      const out = path.join(dir, 'ablation.zarr');
      const s = await scored(vol, out, preset, { mode: 'two-stage', ...over });
      ablations.push({ name, seconds: s.run.seconds.total, dice: r3(s.eval.dice), canvases: s.run.twoStage?.canvases, fillRatio: r3(s.run.twoStage?.fillRatio ?? 0), runFillRatio: r3(s.run.twoStage?.runFillRatio ?? 0), boxes: s.run.twoStage?.boxes, recall: r3(boxRecall(gt, out).recall) });
    }
    const sweep: Array<{ roiThreshold: number; recall: number; seconds: number; dice: number }> = [];
    for (const t of [0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]) {
      say(`bench: roi_threshold ${t}`);
      const out = path.join(dir, 'sweep.zarr');
      const s = await scored(vol, out, preset, { mode: 'two-stage', boxes: { roiThreshold: t } });
      sweep.push({ roiThreshold: t, recall: boxRecall(gt, out).recall, seconds: s.run.seconds.total, dice: s.eval.dice });
    }
    ablations.push({ name: 'roi_threshold sweep', sweep });
    plot = path.join(dir, 'roi-threshold.png');
    fs.writeFileSync(plot, linePlot('recall and time vs roi_threshold', 'roi_threshold', [
      { name: 'box recall', color: [200, 40, 40], points: sweep.map((s) => [s.roiThreshold, s.recall]) },
      { name: 'seconds', color: [40, 40, 200], points: sweep.map((s) => [s.roiThreshold, s.seconds]) },
      { name: 'dice', color: [40, 150, 40], points: sweep.map((s) => [s.roiThreshold, s.dice]) },
    ]));
  }

  const metrics = (s: Scored) => ({ dice: r3(s.eval.dice), iou: r3(s.eval.iou), surfaceDice: r3(s.eval.surfaceDice), hd95: r3(s.eval.hd95), ap10: r3(s.eval.ap10), ap50: r3(s.eval.ap50) });
  const report = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    volume: { kind, shape, seed, fg, voxels: syn.voxels, foreground: r3(syn.foreground / syn.voxels), gtObjects: recall.objects },
    thresholdBaseline: { dice: r3(threshold.dice), threshold: threshold.threshold, direction: threshold.direction },
    oneStage: { seconds: one.run.seconds, busySeconds: one.run.busySeconds, voxelsPerBusySecond: one.run.voxelsPerBusySecond, peakRssMB: one.run.peakRssMB, ...metrics(one), ...one.run.oneStage },
    oneStageStep1: { seconds: oneStep1.run.seconds, busySeconds: oneStep1.run.busySeconds, peakRssMB: oneStep1.run.peakRssMB, ...metrics(oneStep1), ...oneStep1.run.oneStage },
    tta: tta(preset),
    twoStage: { seconds: two.run.seconds, busySeconds: two.run.busySeconds, voxelsPerBusySecond: two.run.voxelsPerBusySecond, peakRssMB: two.run.peakRssMB, ...metrics(two), ...two.run.twoStage, boxRecall: r3(recall.recall) },
    oracle: { seconds: oracle.run.seconds, busySeconds: oracle.run.busySeconds, ...metrics(oracle), canvases: oracle.run.twoStage?.canvases },
    speedup: r3(one.run.seconds.total / two.run.seconds.total),
    speedupStep1: r3(oneStep1.run.seconds.total / two.run.seconds.total),
    diceDelta: r3(two.eval.dice - one.eval.dice),
    stage2VsOracle: r3((two.run.busySeconds['task:stage2'] ?? 0) / (oracle.run.busySeconds['task:stage2'] || 1)),
    tasks: two.run.tasks,
    resume,
    sharded,
    canvasEffect: effect,
    peakMemory: { defaultMB: two.run.peakRssMB, largeMB: large?.peakRssMB, largeShape: large ? largeShape(kind, shape) : undefined },
    scaling: large ? { wallRatio4x: r3(large.seconds.total / two.run.seconds.total), rssRatio4x: r3(large.peakRssMB / two.run.peakRssMB) } : undefined,
    ablations,
    plot,
  };
  const jsonFile = o.json ?? path.join(dir, 'bench.json');
  fs.writeFileSync(jsonFile, JSON.stringify(report, null, 2) + '\n');
  const md = markdown(report);
  fs.writeFileSync(path.join(dir, 'bench.md'), md);
  process.stdout.write(md);
  return report;
}

/** "paste 12.3, relabel 4.5" from voxels per busy second per kind. */
function rateText(rates: Record<string, number> | undefined): string {
  const parts = Object.entries(rates ?? {}).map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)}`);
  return parts.length ? parts.join(', ') : '–';
}

function markdown(r: any): string {
  const f = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(2));
  const b = (s: any, k: string) => s.busySeconds[`task:${k}`] as number | undefined;
  const instanceBusy = (s: any) => Object.entries(s.busySeconds as Record<string, number>)
    .filter(([k]) => k.startsWith('task:') && isInstanceKind(k.slice(5))).reduce((n, [, v]) => n + v, 0);
  const row = (name: string, s: any) => `| ${name} | ${f(s.seconds.total)} | ${f(b(s, 'stage1'))} | ${f(b(s, 'boxes'))} | ${f(b(s, 'stage2') ?? b(s, 'predict'))} | ${f(b(s, 'paste'))} | ${f(instanceBusy(s))} | ${f((s.busySeconds.read ?? 0) + (s.busySeconds.write ?? 0))} | ${f(s.busySeconds.network)} | ${s.dice} | ${s.iou} | ${s.surfaceDice} | ${s.hd95} | ${s.ap10} | ${s.ap50} |`;
  const lines = [
    `# Tessera benchmark — ${r.volume.kind} ${r.volume.shape.join('×')} (${(r.volume.voxels / 1e6).toFixed(1)} M voxels, ${(100 * r.volume.foreground).toFixed(2)} % foreground, ${r.volume.gtObjects} objects), ${r.machine.cpus} CPUs`,
    '',
    'Total: wall clock. Per task kind (stage 2 column: `predict`, the sliding window over the global tile grid, for one-stage; instances: faces + the merge and resolve levels + relabel), I/O and network: busy seconds summed over the tasks in flight and the inference threads, so they overlap and may exceed the total.',
    '',
    '| mode | total s | stage 1 s | boxes s | stage 2 s | paste s | instances s | I/O busy s | network busy s | Dice | IoU | surface Dice | HD95 | AP@0.1 | AP@0.5 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    row('one-stage (step 0.5)', r.oneStage),
    row('one-stage, step 1.0', r.oneStageStep1),
    row('two-stage', r.twoStage),
    row('oracle boxes', r.oracle),
    '',
    `- speedup (one-stage / two-stage, end to end): **${r.speedup}×** against nnU-Net's default step 0.5 (${r.oneStage.tiles} tiles on one global grid = nnU-Net's ${r.oneStage.nnunetTiles}), ${r.speedupStep1}× against step 1.0 (${r.oneStageStep1.tiles} tiles, no overlap); Dice two-stage − one-stage: ${r.diceDelta}`,
    `- test-time augmentation (mirroring) in every mode as the preset sets it: one-stage ${r.tta.baseline}, stage one ${r.tta.stage1}, stage two ${r.tta.stage2}`,
    `- threshold baseline (best intensity threshold): Dice ${r.thresholdBaseline.dice}`,
    `- boxes: ${r.twoStage.candidates} fragments → ${r.twoStage.parents} whole boxes + ${r.twoStage.children} lattice tiles; ${r.twoStage.boxes} boxes in ${r.twoStage.canvases} canvases; fill ratio ${r3(r.twoStage.fillRatio)} (of the voxels the network ran, each canvas at its occupied extent: ${r3(r.twoStage.runFillRatio)}); box recall of GT objects ${r.twoStage.boxRecall}; coverage ${r3(r.twoStage.coverage)}; read amplification (decoded / needed voxels) ${r3(r.twoStage.readAmplification)}`,
    `- tasks (two-stage): ${Object.entries(r.tasks).map(([k, t]: [string, any]) => `${k} ${t.total}`).join(', ')}`,
    `- kill -9 after ${r.resume.pastedBeforeKill} of ${r.resume.pasteTasks} paste tasks, then the same command: ${r.resume.seconds} s (${r.resume.ratio} of the uninterrupted run), ${r.resume.reused} tasks reused; output bit-identical: ${r.resume.identical}`,
    `- read amplification of the same volume stored as Zarr v3 shards of ${r.sharded.shard.join('×')} with ${r.sharded.inner.join('×')} inner chunks: ${r.sharded.readAmplification} (two-stage ${r.sharded.seconds} s; segmentation identical to the v2 input's: ${r.sharded.identical})`,
    `- stage two vs oracle stage two (seconds ratio): ${r.stage2VsOracle}`,
    `- per-chunk CPU tasks, Mvoxel per busy second: ${rateText(r.twoStage.voxelsPerBusySecond)} (two-stage); ${rateText(r.oneStage.voxelsPerBusySecond)} (one-stage)`,
    `- a crop's prediction with canvas neighbours vs in situ (the same canvas holding the volume around it instead) (${r.canvasEffect.crops} crops): mean |Δp| ${r.canvasEffect.meanAbsDiff}, max |Δp| ${r.canvasEffect.maxAbsDiff}, voxels whose class flips ${r.canvasEffect.flipFraction}`,
    ...(r.canvasEffect.oneStage ? [`- the same crops against one-stage (nnU-Net's sliding window) on ${r.canvasEffect.oneStage.voxels} pasted voxels: class differs packed ${r.canvasEffect.oneStage.packedFlipFraction}, in situ ${r.canvasEffect.oneStage.inSituFlipFraction} (one window vs Gaussian-blended overlapping tiles: the floor)`] : []),
    `- the same crops in situ vs in situ with the window moved by a quarter canvas (the network's own sensitivity to window position) on ${r.canvasEffect.shifted.voxels} voxels: class differs ${r.canvasEffect.shifted.flipFraction}`,
    `- peak RSS: two-stage ${r.peakMemory.defaultMB} MB on the default volume, ${r.peakMemory.largeMB ?? '–'} MB on ${r.peakMemory.largeShape ? r.peakMemory.largeShape.join('×') : '–'}; one-stage ${r.oneStage.peakRssMB} MB`,
    ...(r.scaling ? [`- the 4× volume: wall time ${r.scaling.wallRatio4x}×, peak RSS ${r.scaling.rssRatio4x}× the default's`] : []),
  ];
  if (r.ablations.length) {
    lines.push('', '| ablation | seconds | Dice | boxes | canvases | fill | fill of what ran | recall |', '|---|---|---|---|---|---|---|---|');
    for (const a of r.ablations) if (!a.sweep) lines.push(`| ${a.name} | ${a.seconds} | ${a.dice} | ${a.boxes} | ${a.canvases} | ${a.fillRatio} | ${a.runFillRatio} | ${a.recall} |`);
    const sw = r.ablations.find((a: any) => a.sweep);
    if (sw) {
      lines.push('', '| roi_threshold | box recall | seconds | Dice |', '|---|---|---|---|');
      for (const s of sw.sweep) lines.push(`| ${s.roiThreshold} | ${r3(s.recall)} | ${s.seconds} | ${r3(s.dice)} |`);
      lines.push('', `Plot: ${r.plot}`);
    }
  }
  return lines.join('\n') + '\n';
}
