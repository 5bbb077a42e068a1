// The `tessera` command: thin wiring of flags onto the library (shared/). Every command is
// one library call; errors print one line naming the cause and exit non-zero.
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import {
  type Vec3, PRESET_NAMES, createLogger, evaluateOutput, isTesseraError, loadConfig, parseBox, runEmbedded, writeSynth,
} from '../../shared/index.ts';
import { runBench } from '../../bench/bench.ts';
import { formatScaleReport, runScaleBench } from '../../bench/scale.ts';
import { runDemo } from './demo.ts';

function vec3Arg(name: string) {
  return (v: string): Vec3 => {
    const p = v.split(',').map(Number);
    if (p.length !== 3 || !p.every((x) => Number.isInteger(x) && x > 0)) throw new InvalidArgumentError(`${name} must be Z,Y,X positive integers`);
    return p as unknown as Vec3;
  };
}

function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be an integer');
  return n;
}

function progressBar(enabled: boolean) {
  if (!enabled || !process.stderr.isTTY) return undefined;
  const bars = new Map<string, cliProgress.SingleBar>();
  const multi = new cliProgress.MultiBar({ format: ' {phase} [{bar}] {value}/{total}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic);
  return {
    update: (phase: string, done: number, total: number) => {
      let b = bars.get(phase);
      if (!b) { b = multi.create(total, 0, { phase: phase.padEnd(10) }); bars.set(phase, b); }
      b.setTotal(total);
      b.update(done, { phase: phase.padEnd(10) });
    },
    stop: () => multi.stop(),
  };
}

const program = new Command('tessera')
  .description('Two-stage sparse segmentation of huge 3D volumes (EM, CT): stage one finds candidate regions at low resolution, stage two segments them packed into canvases at full resolution.')
  .version('0.1.0');

program.command('synth')
  .description('write a deterministic synthetic volume (NGFF image with pyramid and ground truth)')
  .requiredOption('--kind <kind>', 'em or ct')
  .requiredOption('--shape <Z,Y,X>', 'volume shape in voxels', vec3Arg('--shape'))
  .option('--seed <n>', 'random seed (training used 101 and above)', intArg, 1)
  .requiredOption('--out <vol.zarr>', 'output path')
  .option('--fg <fraction>', 'target foreground fraction', parseFloat)
  .action(async (o) => {
    if (o.kind !== 'em' && o.kind !== 'ct') throw new InvalidArgumentError('--kind must be em or ct');
    const bar = progressBar(true);
    const r = await writeSynth({ kind: o.kind, shape: o.shape, seed: o.seed, fg: o.fg, out: o.out, onTile: (d, t) => bar?.update('synth', d, t) });
    bar?.stop();
    process.stderr.write(`wrote ${o.out}: ${r.voxels} voxels, foreground ${(100 * r.foreground / r.voxels).toFixed(3)} %\n`);
  });

program.command('run')
  .description('segment a volume (embedded runner: one process, no broker)')
  .requiredOption('--input <vol.zarr>', 'input image (NGFF multiscale group or 3D array)')
  .requiredOption('--output <out.zarr>', 'output group')
  .option('--preset <name>', `preset (${PRESET_NAMES.join(', ')})`)
  .option('--config <file>', 'JSON config file (may "extends" a preset)')
  .option('--mode <mode>', 'one-stage or two-stage (default: the config\'s, two-stage)')
  .option('--roi <Z0:Z1,Y0:Y1,X0:X1>', 'process only this sub-volume')
  .option('--provider <ep>', 'execution provider: cpu, cuda, tensorrt, webgpu')
  .option('--threads <n>', 'inference threads', intArg)
  .option('--probabilities', 'also write probabilities/0')
  .option('--overwrite', 'replace an existing output (without it, the same command on the same output resumes)')
  .option('--keep-work', 'keep every intermediate result under OUTPUT/.work (a later run over a larger --roi then recomputes nothing already done)')
  .option('--oracle-boxes <labels>', 'benchmark aid: two-stage with boxes from this ground-truth label array instead of stage one')
  .option('--json', 'print one JSON report on stdout')
  .action(async (o) => {
    if (!o.preset && !o.config) throw new InvalidArgumentError('give --preset NAME or --config FILE');
    const overrides: Record<string, unknown> = {};
    if (o.mode) overrides.mode = o.mode;
    if (o.provider) overrides.inference = { provider: o.provider };
    if (o.threads) overrides.inference = { ...(overrides.inference as object), threads: o.threads };
    if (o.probabilities) overrides.output = { probabilities: true };
    const config = loadConfig({ preset: o.preset, file: o.config, overrides });
    let roi;
    if (o.roi) {
      roi = parseBox(o.roi);
      if (!roi) throw new InvalidArgumentError(`--roi "${o.roi}" must look like Z0:Z1,Y0:Y1,X0:X1`);
    }
    const log = createLogger();
    const bar = progressBar(!o.json);
    // Ctrl-C or a scheduler's SIGTERM: stop handing out tasks, let those in hand end, record
    // "interrupted" (the same command resumes), exit 128 + the signal's number.
    const ac = new AbortController();
    let signalled = 0;
    process.once('SIGINT', () => { signalled = 130; ac.abort(new Error('interrupted')); });
    process.once('SIGTERM', () => { signalled = 143; ac.abort(new Error('terminated')); });
    const report = await runEmbedded({ config, input: o.input, output: o.output, roi, overwrite: o.overwrite, keepWork: o.keepWork, oracle: o.oracleBoxes, log, signal: ac.signal, progress: bar?.update });
    bar?.stop();
    if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
    else process.stderr.write(`${report.mode} ${report.status}: ${report.voxels} voxels in ${report.seconds.total} s (${(report.voxelsPerSecond / 1e6).toFixed(2)} Mvox/s) → ${o.output}\n`);
    if (report.failures.length) {
      const skipped = Object.values(report.tasks).reduce((n, t) => n + t.skipped, 0);
      process.stderr.write(`${report.failures.length} task(s) failed${skipped ? ` (${skipped} more skipped because they need them)` : ''}; re-run the same command to retry them:\n${report.failures.map((f) => `  ${f.task}: ${f.error}`).join('\n')}\n`);
      process.exitCode = 1;
    } else if (report.status === 'interrupted') {
      process.stderr.write('interrupted; re-run the same command to resume\n');
      process.exitCode = signalled || 130;
    }
  });

program.command('eval')
  .description('score a segmentation against ground truth (Dice, IoU, surface Dice, HD95, AP)')
  .requiredOption('--pred <out.zarr>', 'output group of tessera run')
  .requiredOption('--gt <vol.zarr>', 'input volume with labels/gt, or a label image')
  .option('--tolerance <t>', 'surface Dice tolerance in the spacing unit (default: coarsest voxel side)', parseFloat)
  .option('--json', 'print one JSON object on stdout')
  .action(async (o) => {
    const r = await evaluateOutput({ pred: o.pred, gt: o.gt, tolerance: o.tolerance });
    if (o.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    for (const [cls, s] of Object.entries(r.perClass)) {
      process.stdout.write(`class ${cls}: Dice ${s.dice.toFixed(4)}  IoU ${s.iou.toFixed(4)}  surface Dice@${r.tolerance} ${s.surfaceDice.toFixed(4)}  HD95 ${s.hd95.toFixed(2)} ${r.unit ?? ''}  AP@0.1 ${s.ap10.toFixed(3)}  AP@0.5 ${s.ap50.toFixed(3)}  objects gt ${s.gtObjects} / pred ${s.predObjects}\n`);
    }
  });

program.command('bench')
  .description('one-stage vs two-stage on a synthetic volume; writes JSON and a Markdown table')
  .option('--kind <kind>', 'em or ct', 'em')
  .option('--shape <Z,Y,X>', 'volume shape', vec3Arg('--shape'))
  .option('--seed <n>', 'volume seed', intArg, 7)
  .option('--fg <fraction>', 'foreground fraction', parseFloat, 0.01)
  .option('--dir <dir>', 'working directory', 'bench-results')
  .option('--json <file>', 'write the JSON report here')
  .option('--ablations', 'also run the ablations (parents/children, resize, jigsaw, canvas size, roi sweep)')
  .option('--quick', 'a small volume, for a smoke test')
  .option('--scale', 'instead: the scale benchmark (scheduler over the full FAFB grid, box planning on 10⁶ boxes; no models)')
  .action(async (o) => {
    if (o.scale) {
      const r = await runScaleBench({ quick: o.quick, json: o.json });
      process.stdout.write(formatScaleReport(r));
      return;
    }
    await runBench(o);
  });

program.command('demo')
  .description('synthesize a small EM volume, segment it with the embedded runner, score it')
  .option('--dir <dir>', 'working directory', 'work/demo')
  .action(async (o) => {
    await runDemo(o.dir);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (isTesseraError(err) || err instanceof InvalidArgumentError || err instanceof RangeError) {
    process.stderr.write(`tessera: ${(err as Error).message}\n`);
  } else {
    process.stderr.write(`tessera: ${(err as Error).stack ?? String(err)}\n`);
  }
  process.exitCode = 2;
}
