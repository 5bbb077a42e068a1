// `tessera demo` (= `npm run demo`): the main job on the embedded default, end to end —
// synthesize an EM volume, segment it two-stage, score it against its ground truth.
import * as path from 'node:path';
import { createLogger, evaluateOutput, loadConfig, runEmbedded, writeSynth } from '../../shared/index.ts';
import { unitSymbol } from '../../shared/units.ts';

export async function runDemo(dir: string, mode: 'one-stage' | 'two-stage' = 'two-stage'): Promise<void> {
  const vol = path.join(dir, 'vol.zarr');
  const out = path.join(dir, 'out.zarr');
  const say = (s: string) => process.stderr.write(s + '\n');
  say(`1/3 tessera synth --kind em --shape 32,384,384 --seed 1 --out ${vol}`);
  await writeSynth({ kind: 'em', shape: [32, 384, 384], seed: 1, out: vol, overwrite: true });
  say(`2/3 tessera run --input ${vol} --output ${out} --preset synthetic-em --mode ${mode}`);
  const config = loadConfig({ preset: 'synthetic-em', overrides: { mode } });
  const report = await runEmbedded({ config, input: vol, output: out, overwrite: true, log: createLogger('warn') });
  say(`    ${report.voxels} voxels in ${report.seconds.total} s (${(report.voxelsPerSecond / 1e6).toFixed(2)} Mvox/s)`);
  say(`3/3 tessera eval --pred ${out} --gt ${vol}`);
  const ev = await evaluateOutput({ pred: out, gt: vol });
  const s = ev.perClass['1'];
  say(`    Dice ${s.dice.toFixed(4)}  IoU ${s.iou.toFixed(4)}  surface Dice@${ev.tolerance} ${unitSymbol(ev.unit)} ${s.surfaceDice.toFixed(4)}  HD95 ${s.hd95.toFixed(2)} ${unitSymbol(ev.unit)}  AP@0.5 ${s.ap50.toFixed(3)}`);
  say(`see it: npx tessera report ${out} --gt ${path.join(vol, 'labels', 'gt', '0')}   or   npx tessera view ${out} --input ${vol}`);
}
