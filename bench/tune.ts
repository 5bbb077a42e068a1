// Tuning the synthetic presets on tuning seeds, never on the benchmark volume (seed 7): one
// parameter at a time around the preset, two-stage runs scored against ground truth. Rule: a
// value replaces the preset's when it needs fewer canvases (stage two's cost, deterministic where
// seconds are noisy) at a mean Dice no more than NOISE lower, or when it raises the mean Dice by
// more than NOISE at no more canvases — a change may not buy speed with quality or quality with
// speed; those trade-offs are the user's (the tables show them). One parameter at a time on
// purpose: per-parameter tolerances compound (CT: three changes each within 0.01 of the best
// lost 0.04 together).
//
//   node --import tsx bench/tune.ts --kind em --seeds 21,22 > bench/tune-em.md 2> bench/tune-em.log
//   node --import tsx bench/tune.ts --kind em --seeds 21,22 --from-log bench/tune-em.log   # the table again, from the runs' log
//   node --import tsx bench/tune.ts --kind ct --only pack.crop > /tmp/tune-ct-crop.md     # one parameter
//
// Each run is a child process (`tessera run --json`), as in the benchmark.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { evaluateOutput } from '../shared/run/eval.ts';
import { writeSynth } from '../shared/run/synth.ts';
import { DEFAULT_SHAPE } from './bench.ts';
import { loadConfig } from '../shared/config/load.ts';
import { PACKAGE_ROOT } from '../shared/config/load.ts';

const exec = promisify(execFile);
const CLI = path.join(PACKAGE_ROOT, 'bin', 'tessera.mjs');

type Kind = 'em' | 'ct';
type Override = Record<string, Record<string, unknown>>;

/** The values tried per parameter (the preset's own value is always among them). */
const SWEEP: Record<Kind, Array<[string, Array<[string, Override]>]>> = {
  em: [
    ['boxes.roiThreshold', [0.03, 0.1, 0.3].map((v) => [String(v), { boxes: { roiThreshold: v } }])],
    ['boxes.margin', [[0, 2, 2], [1, 4, 4], [2, 8, 8]].map((v) => [v.join('×'), { boxes: { margin: v } }])],
    ['pack.context', [[0, 0, 0], [0, 4, 4], [1, 4, 4], [1, 8, 8]].map((v) => [v.join('×'), { pack: { context: v } }])],
    ['boxes.nmmThreshold', [0.2, 0.35, 0.5].map((v) => [String(v), { boxes: { nmmThreshold: v } }])],
    // The smallest box (boxes are grown to at least pack.crop): with its context it decides how
    // many small crops stack in a canvas (6×40×40 crops: 2 deep × 3 × 3 in 16×128×128).
    ['pack.crop', [[4, 32, 32], [3, 32, 32], [4, 24, 24], [3, 24, 24]].map((v) => [v.join('×'), { pack: { crop: v } }])],
    // The re-crop lattice's tile: with its context, how many tiles share a canvas (16×64×64 tiles
    // with 1×4×4 context are 18×72×72: one per canvas, split in two along z).
    ['boxes.recrop', [[16, 64, 64], [14, 56, 56], [14, 48, 48]].map((v) => [v.join('×'), { boxes: { recrop: v } }])],
  ],
  ct: [
    ['boxes.roiThreshold', [0.01, 0.03, 0.1].map((v) => [String(v), { boxes: { roiThreshold: v } }])],
    ['boxes.margin', [[0, 2, 2], [1, 4, 4], [2, 8, 8]].map((v) => [v.join('×'), { boxes: { margin: v } }])],
    ['pack.context', [[0, 4, 4], [1, 4, 4], [1, 8, 8], [2, 16, 16]].map((v) => [v.join('×'), { pack: { context: v } }])],
    ['boxes.nmmThreshold', [0.1, 0.2, 0.35].map((v) => [String(v), { boxes: { nmmThreshold: v } }])],
    ['pack.crop', [[4, 16, 16], [3, 16, 16], [4, 12, 12], [3, 12, 12]].map((v) => [v.join('×'), { pack: { crop: v } }])],
    ['boxes.recrop', [[16, 64, 64], [14, 48, 48], [14, 40, 40]].map((v) => [v.join('×'), { boxes: { recrop: v } }])],
  ],
};

async function runScored(vol: string, out: string, preset: string, over: Override): Promise<{ seconds: number; dice: number; canvases: number }> {
  const cfg = `${out}.config.json`;
  fs.writeFileSync(cfg, JSON.stringify({ extends: preset, mode: 'two-stage', ...over }));
  const { stdout } = await exec(process.execPath, [CLI, 'run', '--input', vol, '--output', out, '--config', cfg, '--json', '--overwrite'], { maxBuffer: 1 << 26, env: { ...process.env, TESSERA_LOG: 'warn' } });
  const r = JSON.parse(stdout.trim().split('\n').pop()!);
  const e = await evaluateOutput({ pred: out, gt: vol });
  fs.rmSync(out, { recursive: true, force: true });
  return { seconds: r.seconds.total, dice: e.perClass['1'].dice, canvases: r.twoStage.canvases };
}

/** Differences in mean Dice below this are run-to-run and seed noise, not a change. */
const NOISE = 0.001;

interface Row { value: string; seconds: number; dice: number; canvases: number }

function table(param: string, rows: readonly Row[], presetValue: string): string[] {
  const preset = rows.find((r) => r.value === presetValue);
  const better = (r: Row) => !!preset && ((r.canvases < preset.canvases && r.dice >= preset.dice - NOISE) || (r.dice > preset.dice + NOISE && r.canvases <= preset.canvases));
  const chosen = rows.filter(better).sort((a, b) => a.canvases - b.canvases || b.dice - a.dice)[0] ?? preset;
  return [`## ${param}`, '', '| value | mean s | mean Dice | canvases | chosen |', '|---|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.value}${r.value === presetValue ? ' (preset)' : ''} | ${r.seconds.toFixed(2)} | ${r.dice.toFixed(4)} | ${r.canvases.toFixed(1)} | ${r === chosen ? '✓' : ''} |`), ''];
}

/** The preset's value of `param`, spelled as the sweep spells it. */
function presetValue(preset: string, param: string): string {
  const [group, key] = param.split('.');
  const v = (loadConfig({ preset }) as unknown as Record<string, Record<string, unknown>>)[group][key];
  return Array.isArray(v) ? v.join('×') : String(v);
}

async function main(): Promise<void> {
  const arg = (name: string, d: string) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : d; };
  const kind = arg('kind', 'em') as Kind;
  const seeds = arg('seeds', kind === 'em' ? '21,22' : '23,24').split(',').map(Number);
  if (seeds.includes(7)) throw new Error('seed 7 is the benchmark volume: tune on other seeds');
  const preset = `synthetic-${kind}`;
  const fromLog = arg('from-log', '');
  // --only PARAM: sweep one parameter (its table alone).
  const only = arg('only', '');
  const logged = new Map<string, Row[]>();
  if (fromLog) {
    for (const l of fs.readFileSync(fromLog, 'utf8').split('\n')) {
      const m = /^(\S+) (\S+): (\{.*\})$/.exec(l);
      if (m) logged.set(m[1], [...(logged.get(m[1]) ?? []), JSON.parse(m[3]) as Row]);
    }
  }
  // A sweep without the preset's value has nothing to compare with (the preset moved since): refuse before any run.
  const sweep = SWEEP[kind].filter(([p]) => !only || p === only).map(([param, values]) => {
    const pv = presetValue(preset, param);
    if (!values.some(([v]) => v === pv)) throw new Error(`${param}: the preset's value ${pv} is not among the sweep's values; add it to SWEEP`);
    return [param, values, pv] as const;
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-tune-'));
  const vols: string[] = [];
  if (!fromLog) {
    for (const seed of seeds) {
      const vol = path.join(dir, `${kind}-${seed}.zarr`);
      await writeSynth({ kind, shape: DEFAULT_SHAPE[kind], seed, fg: 0.01, out: vol, overwrite: true });
      vols.push(vol);
    }
  }
  const lines = [`# Tuning ${preset} on seeds ${seeds.join(', ')} (${DEFAULT_SHAPE[kind].join('×')}, 1 % foreground)`, '',
    `Made with \`node --import tsx bench/tune.ts --kind ${kind} --seeds ${seeds.join(',')}${only ? ` --only ${only}` : ''}\`${fromLog ? ` (its runs are logged in ${path.basename(fromLog)}; this table was rendered from that log with \`--from-log\`)` : ''} (2 cores, shared: seconds are noisy). One parameter at a time around the preset, two-stage; seconds, Dice and canvases are means over the seeds. Rule: a value replaces the preset's only if it needs fewer canvases (stage two's cost) at a mean Dice at most ${NOISE} lower, or raises the mean Dice by more than ${NOISE} at no more canvases; speed-for-quality trade-offs are left to the user and shown here.`, ''];
  for (const [param, values, pv] of sweep) {
    const rows: Row[] = logged.get(param) ?? [];
    if (!fromLog) {
      for (const [value, over] of values) {
        const rs = [];
        for (const vol of vols) rs.push(await runScored(vol, path.join(dir, 'out.zarr'), preset, over));
        rows.push({ value, seconds: rs.reduce((n, r) => n + r.seconds, 0) / rs.length, dice: rs.reduce((n, r) => n + r.dice, 0) / rs.length, canvases: rs.reduce((n, r) => n + r.canvases, 0) / rs.length });
        process.stderr.write(`${param} ${value}: ${JSON.stringify(rows[rows.length - 1])}\n`);
      }
    }
    if (rows.length) lines.push(...table(param, rows, pv));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
