// Canvas isolation on tuning seeds: for each fill/gap/context setting, a two-stage run scored
// against ground truth, and the canvas-neighbour effect (packed vs in situ, and both vs
// one-stage) measured on its canvases. Never run on the benchmark volume (seed 7).
//
//   node --import tsx bench/isolation.ts --kind em --seeds 21,22 > bench/isolation-em.md
//   node --import tsx bench/isolation.ts --kind ct --seeds 23,24 > bench/isolation-ct.md
//
// --over JSON: config overrides for every run, one-stage included (e.g. another model:
// '{"models":{"fullres":"/tmp/m/synthetic-em-fullres.onnx"}}'); ISO_SETTINGS replaces the rows.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { evaluateOutput } from '../shared/run/eval.ts';
import { writeSynth } from '../shared/run/synth.ts';
import { DEFAULT_SHAPE, run } from './bench.ts';
import { measureCanvasEffect } from './canvas-effect.ts';

type Override = Record<string, Record<string, unknown>>;

// Every row sets both choices, so the preset is one of the rows whichever it takes.
const SETTINGS: Array<[string, Override]> = JSON.parse(process.env.ISO_SETTINGS ?? 'null') ?? [
  ['fill zero, split', { pack: { fill: 'zero', contextFit: 'split' } }],
  ['fill context, split', { pack: { fill: 'context', contextFit: 'split' } }],
  ['fill zero, clip', { pack: { fill: 'zero', contextFit: 'clip' } }],
  ['fill context, clip', { pack: { fill: 'context', contextFit: 'clip' } }],
  ['fill context, clip, gap 1×16×16', { pack: { fill: 'context', contextFit: 'clip', gap: [1, 16, 16] } }],
];

async function runJson(vol: string, out: string, preset: string, over: Record<string, unknown>): Promise<{ seconds: number; canvases: number; fill: number; runFill: number }> {
  const r = await run(vol, out, preset, over);
  return { seconds: r.seconds.total, canvases: r.twoStage?.canvases ?? 0, fill: r.twoStage?.fillRatio ?? 0, runFill: r.twoStage?.runFillRatio ?? 0 };
}

const { values } = parseArgs({ options: { kind: { type: 'string', default: 'em' }, seeds: { type: 'string', default: '21' }, shape: { type: 'string' }, crops: { type: 'string', default: '48' }, over: { type: 'string', default: '{}' } } });
const base = JSON.parse(values.over!) as Record<string, unknown>;
const kind = values.kind as 'em' | 'ct';
const preset = `synthetic-${kind}`;
const shape = (values.shape ? values.shape.split(',').map(Number) : DEFAULT_SHAPE[kind]) as [number, number, number];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-isolation-'));
const say = (s: string) => process.stderr.write(`${s}\n`);
console.log([
  `# Canvas isolation, ${kind.toUpperCase()}, tuning seeds ${values.seeds} (${shape.join('×')}, 1 % foreground)`, '',
  `Made with \`node --import tsx bench/isolation.ts --kind ${kind} --seeds ${values.seeds}\`. Per setting: a two-stage run scored against ground truth (Dice), then up to ${values.crops} crops of shared canvases run three ways — packed with their neighbours; in situ (a canvas of the same extent with the crop at the same place, holding the volume around it instead of neighbours); in situ with the window moved by a quarter canvas. A flip is a pasted voxel whose class (p > 0.5) differs. "in situ vs moved window" is the network's own sensitivity to where a voxel sits in its window; "in situ vs one-stage" is one window against nnU-Net's Gaussian-blended tiles. "fill of what ran" counts each canvas at its occupied extent, as the network runs it.`, ''].join('\n'));
console.log(`| seed | setting | Dice | canvases | fill | fill of what ran | flips packed vs in situ | in situ vs moved window | packed vs one-stage | in situ vs one-stage | seconds |`);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const seed of values.seeds!.split(',').map(Number)) {
  const vol = path.join(dir, `vol-${seed}.zarr`);
  await writeSynth({ kind, shape, seed, fg: 0.01, out: vol, overwrite: true });
  const one = path.join(dir, `one-${seed}.zarr`);
  const oneRun = await runJson(vol, one, preset, { ...base, mode: 'one-stage', output: { probabilities: true } });
  const oneDice = (await evaluateOutput({ pred: one, gt: vol })).perClass['1'].dice;
  console.log(`| ${seed} | one-stage (reference) | ${oneDice.toFixed(4)} | | | | | | | | ${oneRun.seconds.toFixed(1)} |`);
  for (const [name, over] of SETTINGS) {
    const out = path.join(dir, `two-${seed}.zarr`);
    const r = await runJson(vol, out, preset, { ...base, mode: 'two-stage', ...over });
    const e = await evaluateOutput({ pred: out, gt: vol });
    const fx = await measureCanvasEffect(vol, out, preset, Number(values.crops), one, { ...base, ...over });
    const row = [seed, name, e.perClass['1'].dice.toFixed(4), r.canvases, r.fill.toFixed(3), r.runFill.toFixed(3), fx.flipFraction, fx.shifted.flipFraction, fx.oneStage?.packedFlipFraction, fx.oneStage?.inSituFlipFraction, r.seconds.toFixed(1)];
    console.log(`| ${row.join(' | ')} |`);
    say(row.join(' '));
    fs.rmSync(out, { recursive: true, force: true });
  }
}
fs.rmSync(dir, { recursive: true, force: true });
