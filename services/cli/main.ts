// The `tessera` command: thin wiring of flags onto the library (shared/). Every command is
// one library call; errors print one line naming the cause and exit non-zero.
//
// Start-up loads only commander and the flag declarations; each command loads the library (ONNX
// Runtime, NATS, Zarr) when it runs, so `tessera --help`, a status call or a restarted worker's
// first line come at once.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { isTesseraError, oneLine } from '../../shared/errors.ts';
import { parseBox } from '../../shared/geometry/box.ts';
import { configFromFlags, fractionArg, intArg, positiveIntArg, roiListArg, runFlags, spacingArg, speedupArg, stopSignals, vec3Arg } from './flags.ts';
import { exitQuietlyOnEpipe, printReport } from './report.ts';
import { coordinatorCommand, natsFlags } from '../coordinator/main.ts';
import { workerCommand } from '../worker/main.ts';
import { viewCommand } from './view.ts';

const library = () => import('../../shared/index.ts');

// Usage errors exit 2 like every other bad input (commander's default is 1, which means
// "finished with failed tasks" here).
let usagePrinted = false;
const program = new Command('tessera')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => { usagePrinted = true; write(text); } })
  .description('Two-stage sparse segmentation of huge 3D volumes (EM, CT): stage one finds candidate regions at low resolution, stage two segments them packed into canvases at full resolution.')
  .version('0.1.0');

program.command('synth')
  .description('write a deterministic synthetic volume (NGFF image with pyramid and ground truth)')
  .requiredOption('--kind <kind>', 'em or ct')
  .requiredOption('--shape <Z,Y,X>', 'volume shape in voxels', vec3Arg('--shape'))
  .option('--seed <n>', 'random seed (training used 101 and above)', intArg, 1)
  .requiredOption('--out <vol.zarr>', 'output path')
  .option('--fg <fraction>', 'target foreground fraction', parseFloat)
  .option('--overwrite', 'replace an existing Zarr at --out (removed completely first)')
  .option('--chunks <Z,Y,X>', 'storage chunk (inner chunk with --shard); default 16,128,128', vec3Arg('--chunks'))
  .option('--shard <Z,Y,X>', 'write Zarr v3 (NGFF 0.5) with shards of this shape holding --chunks inner chunks', vec3Arg('--shard'))
  .action(async (o) => {
    if (o.kind !== 'em' && o.kind !== 'ct') throw new InvalidArgumentError('--kind must be em or ct');
    const [{ writeSynth }, { runProgress }] = await Promise.all([library(), import('./progress.ts')]);
    const bar = runProgress();
    const r = await writeSynth({ kind: o.kind, shape: o.shape, seed: o.seed, fg: o.fg, out: o.out, overwrite: o.overwrite, chunks: o.chunks, shard: o.shard, onTile: (d, t) => bar.update('synth', d, t) });
    bar.stop();
    process.stderr.write(`wrote ${o.out}: ${r.voxels} voxels, foreground ${(100 * r.foreground / r.voxels).toFixed(3)} %\n`);
  });

runFlags(natsFlags(program.command('run')))
  .description('segment a volume: embedded runner (one process, no broker) by default; with --nats, a coordinator here and --workers worker processes plus --mergers merger processes over NATS JetStream')
  .option('--oracle-boxes <labels>', 'benchmark aid: two-stage with boxes from this ground-truth label array instead of stage one')
  .option('--workers <n>', 'with --nats: worker processes to start on this machine', positiveIntArg('--workers'), 1)
  .option('--mergers <n>', 'with --nats: merger processes to start on this machine (they share the border tasks: boxes, faces, the id reduction)', positiveIntArg('--mergers'), 1)
  .option('--concurrency <n>', 'with --nats: tasks in hand per worker process', positiveIntArg('--concurrency'), 2)
  .action(async (o) => {
    if (o.nats) {
      if (o.oracleBoxes) throw new InvalidArgumentError('--oracle-boxes is a benchmark aid of the embedded runner; drop --nats');
      process.exitCode = await (await import('./distributed.ts')).runDistributed(o);
      return;
    }
    const { config, roi } = configFromFlags(o);
    const [{ runEmbedded }, { runProgress }] = await Promise.all([library(), import('./progress.ts')]);
    const bar = runProgress({ json: o.json, intervalS: o.progressInterval });
    const log = bar.log;
    // Ctrl-C or a scheduler's SIGTERM: stop handing out tasks, let those in hand end, record
    // "interrupted" (the same command resumes), exit 128 + the signal's number.
    const stopping = stopSignals();
    const report = await runEmbedded({ config, input: o.input, output: o.output, roi, overwrite: o.overwrite, keepWork: o.keepWork, oracle: o.oracleBoxes, log, signal: stopping.signal, progress: bar.update });
    bar.stop();
    process.exitCode = printReport(report, o.output, !!o.json, stopping.code());
  });

coordinatorCommand(program);
workerCommand(program, 'worker');
workerCommand(program, 'merger');
program.command('status')
  .description('show where a run stands: give its output path, or its run id (read from NATS)')
  .argument('<output-or-run>', 'an output group (out.zarr) or a run id')
  .option('--nats <url>', 'NATS server(s) for a run id (default: $TESSERA_NATS_URL)')
  .option('--json', 'print one JSON object on stdout')
  .action(async (target: string, o: { nats?: string; json?: boolean }) => (await import('./status.ts')).printStatus(target, o));
viewCommand(program);

program.command('convert <input> <output>')
  .description('NIfTI (.nii, .nii.gz) or a TIFF stack (multi-page .tif, or a folder of sections) → an OME-Zarr image with the pyramid a run reads (voxel size, unit and NIfTI header kept); or labels (a tessera output, a label image, a uint8 array) → NIfTI on the header of the image they segment')
  .option('--like <image.nii.gz>', 'labels → NIfTI: the image whose header (dims, voxel size, orientation) the labels take (default: the header the converted input kept)')
  .option('--chunks <Z,Y,X>', 'storage chunk of the Zarr image (default 32,128,128)', vec3Arg('--chunks'))
  .option('--spacing <Z,Y,X>', 'voxel size (a TIFF stack that does not say its own; overrides a NIfTI header\'s)', spacingArg('--spacing'))
  .option('--unit <unit>', 'unit of --spacing: nanometer, micrometer, millimeter (default: the file\'s; micrometer for TIFF)')
  .option('--overwrite', 'replace an existing output')
  .action(async (input: string, output: string, o: { like?: string; chunks?: [number, number, number]; spacing?: [number, number, number]; unit?: string; overwrite?: boolean }) => {
    const { convert } = await import('../../shared/run/convert.ts');
    const r = await convert({ input, output, like: o.like, chunks: o.chunks, spacing: o.spacing, unit: o.unit, overwrite: o.overwrite });
    process.stderr.write(`wrote ${r.output}: ${r.shape.join('x')} voxels of ${r.spacing.map((s) => +s.toPrecision(6)).join('x')} ${r.unit}${r.levels > 1 ? `, ${r.levels} levels` : ''}\n`);
  });

program.command('report <output>')
  .description('write a self-contained HTML page of what a run did: slices with segmentation, boxes and ground truth; time per phase and task kind; boxes and canvases per block; failures')
  .option('--input <vol.zarr>', 'input image for the slices (default: the run\'s input when it still exists)')
  .option('--gt <labels>', 'ground-truth label array, drawn as contours')
  .option('--out <file.html>', 'where to write the page (default: OUTPUT/report.html)')
  .option('--window <n>', 'side of the slice windows in voxels', positiveIntArg('--window'), 512)
  .action(async (output: string, o: { input?: string; gt?: string; out?: string; window: number }) => {
    const { writeReport } = await import('../../shared/report/report.ts');
    const r = await writeReport({ output, input: o.input, gt: o.gt, file: o.out, window: o.window });
    process.stdout.write(`wrote ${r.file}: ${r.figures.length} figures (${r.figures.join(', ')}), slices through ${r.center.join(',')}\n`);
  });

program.command('eval')
  .description('score a segmentation against ground truth (Dice, IoU, surface Dice, HD95, AP)')
  .requiredOption('--pred <out.zarr>', 'a tessera output, or anyone\'s prediction: an NGFF label image or a bare Zarr array of class ids (uint8 or any integer type; a bare one takes the truth\'s voxel size)')
  .requiredOption('--gt <vol.zarr>', 'input volume with labels/gt, or a label image (a path, or a URL: https://, s3://, gs://)')
  .option('--tolerance <t>', 'surface Dice tolerance in the spacing unit (default: the finest voxel side)', parseFloat)
  .option('--spacing <Z,Y,X>', 'voxel size of a bare --gt label array that has no NGFF scale', (v: string) => {
    const p = v.split(',').map(Number);
    if (p.length !== 3 || !p.every((x) => x > 0)) throw new InvalidArgumentError('--spacing must be Z,Y,X positive numbers');
    return p;
  })
  .option('--roi <Z0:Z1,Y0:Y1,X0:X1>', 'score this region of both (default: the tessera run\'s ROI, else the whole volume)', (v: string) => {
    const roi = parseBox(v);
    if (!roi) throw new InvalidArgumentError('--roi must be Z0:Z1,Y0:Y1,X0:X1');
    return roi;
  })
  .option('--foreground', 'score every nonzero voxel as foreground (class 1): for arrays of instance ids rather than class ids')
  .option('--json', 'print one JSON object on stdout')
  .action(async (o) => {
    const { evaluateOutput } = await library();
    const r = await evaluateOutput({ pred: o.pred, gt: o.gt, tolerance: o.tolerance, spacing: o.spacing, roi: o.roi, foreground: o.foreground });
    if (o.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    const { unitSymbol } = await import('../../shared/units.ts');
    const u = unitSymbol(r.unit) || 'voxels';
    for (const [cls, s] of Object.entries(r.perClass)) {
      process.stdout.write(`class ${cls}: Dice ${s.dice.toFixed(4)}  IoU ${s.iou.toFixed(4)}  surface Dice@${r.tolerance} ${u} ${s.surfaceDice.toFixed(4)}  HD95 ${s.hd95.toFixed(2)} ${u}  AP@0.1 ${s.ap10.toFixed(3)}  AP@0.5 ${s.ap50.toFixed(3)}  objects gt ${s.gtObjects} / pred ${s.predObjects}\n`);
    }
    if (r.boxRecall) process.stdout.write(`stage-one recall: ${r.boxRecall.found} of ${r.boxRecall.objects} ground-truth objects (${(100 * r.boxRecall.recall).toFixed(1)} %) have ≥ 90 % of their voxels in the boxes stage two ran on\n`);
  });

const model = program.command('model').description('model cards: the JSON sidecar that says how to run an ONNX network');
model.command('card <model.onnx>')
  .description('write MODEL.json beside the network: tensor names, channels and size multiple read from the graph, the sha256, and what you give; checked by running one patch')
  .requiredOption('--spacing <Z,Y,X>', 'voxel size the network was trained at', spacingArg('--spacing'))
  .requiredOption('--patch <Z,Y,X>', 'the training patch size', vec3Arg('--patch'))
  .requiredOption('--normalization <spec>', 'zscore:MEAN:STD, or zscore:MEAN:STD:LO:HI to clip raw intensities first (nnU-Net CT)')
  .option('--classes <names>', 'comma-separated class names, background first', 'background,foreground')
  .option('--output <kind>', 'what the graph outputs: logits (Tessera applies the activation) or probabilities (the graph applies it)', 'logits')
  .option('--activation <kind>', 'softmax (one class per voxel, channel 0 background) or sigmoid (independent channels)', 'softmax')
  .option('--divisor <Z,Y,X>', 'size multiples the network needs (probed from the graph when absent)', vec3Arg('--divisor'))
  .option('--stage <stage>', 'fullres or lowres (documentation)')
  .option('--name <name>', 'model name (default: the file name)')
  .option('--input-name <name>', 'the input tensor, when the graph has several')
  .option('--output-name <name>', 'the output tensor, when the graph has several')
  .option('--overwrite', 'replace an existing sidecar')
  .option('--json', 'print the card and the check as JSON')
  .action(async (onnx: string, o) => {
    const m = /^zscore:([^:]+):([^:]+)(?::([^:]+):([^:]+))?$/.exec(o.normalization);
    const nums = m ? m.slice(1).filter((x) => x !== undefined).map(Number) : [];
    if (!m || nums.some((x) => !Number.isFinite(x)) || nums[1] <= 0) throw new InvalidArgumentError('--normalization must be zscore:MEAN:STD or zscore:MEAN:STD:LO:HI with STD > 0');
    if (o.output !== 'logits' && o.output !== 'probabilities') throw new InvalidArgumentError('--output must be logits or probabilities');
    if (o.activation !== 'softmax' && o.activation !== 'sigmoid') throw new InvalidArgumentError('--activation must be softmax or sigmoid');
    if (o.stage !== undefined && o.stage !== 'fullres' && o.stage !== 'lowres') throw new InvalidArgumentError('--stage must be fullres or lowres');
    const { writeModelCard } = await import('../../shared/infer/card.ts');
    const r = await writeModelCard(onnx, {
      spacing: o.spacing, patch: o.patch, classes: String(o.classes).split(','), output: o.output, activation: o.activation,
      normalization: { kind: 'zscore', mean: nums[0], std: nums[1], ...(nums.length === 4 ? { clip: [nums[2], nums[3]] as [number, number] } : {}) },
      divisor: o.divisor, stage: o.stage, name: o.name, inputName: o.inputName, outputName: o.outputName, overwrite: o.overwrite,
    });
    if (o.json) { process.stdout.write(JSON.stringify(r) + '\n'); return; }
    process.stdout.write(`wrote ${r.sidecar}: ${r.card.inputName} → ${r.card.outputName} (${(r.card.classes as string[]).length} channels, ${r.card.output} + ${r.card.activation}), divisor [${(r.card.divisor as number[]).join(', ')}]${r.divisorProbed ? ' (probed)' : ''}; one patch ${o.patch.join('x')} ran, outputs in [${r.range.map((v) => v.toPrecision(4)).join(', ')}]\n`);
    if (r.windowNorm) process.stdout.write(`note: the graph normalises over its whole input (${r.windowNorm}): as a stage-two network, crops packed in one canvas will change each other's output (docs/models.md, "Canvas isolation")\n`);
  });

program.command('tune')
  .description('choose two-stage settings for this network and this data without labels: sample ROIs, one-stage there once, candidates around the starting config by successive halving, each scored by network voxels and wall time against Dice and object recall to one-stage; writes TUNED.json (tessera run --config TUNED.json), the Pareto front as TUNED.pareto.md and .png, and TUNED.report.json')
  .requiredOption('--input <vol.zarr>', 'input image (as tessera run takes it)')
  .option('--preset <name>', 'starting preset')
  .option('--config <file>', 'starting config file (TUNED.json extends it: its models, its settings)')
  .option('--roi <Z0:Z1,Y0:Y1,X0:X1>', 'a sample ROI (repeat for several; default: --samples ROIs of one chunk each, spread over the volume)', roiListArg, [])
  .option('--gt <labels>', 'ground truth (input volume with labels/gt, or a label image): also score every trial against it')
  .option('--mask <mask.zarr>', 'tissue mask, passed to every run (as tessera run --mask)')
  .option('--max-loss <D>', 'choose the fewest network voxels with Dice to one-stage ≥ 1 − D', fractionArg('--max-loss'))
  .option('--min-speedup <S>', 'choose the best Dice to one-stage with ≥ S× fewer network voxels than one-stage', speedupArg)
  .requiredOption('--out <TUNED.json>', 'the chosen config; its table, plot, report and work folder (TUNED.tune/, reused by a re-run) go beside it')
  .option('--budget <n>', 'candidates in the first rung, the starting config included', positiveIntArg('--budget'), 12)
  .option('--samples <k>', 'sample ROIs without --roi', positiveIntArg('--samples'), 2)
  .option('--seed <n>', 'seed of the candidates\' draw', intArg, 1)
  .option('--json', 'print the JSON report on stdout')
  .action(async (o) => {
    if (!o.preset === !o.config) throw new InvalidArgumentError('give one of --preset NAME or --config FILE');
    if ((o.maxLoss === undefined) === (o.minSpeedup === undefined)) throw new InvalidArgumentError('give one of --max-loss D or --min-speedup S');
    const objective = o.maxLoss !== undefined ? { kind: 'max-loss' as const, loss: o.maxLoss as number } : { kind: 'min-speedup' as const, speedup: o.minSpeedup as number };
    const [{ tune }, { createLogger }] = await Promise.all([import('../../shared/tune/tune.ts'), import('../../shared/log.ts')]);
    const stopping = stopSignals();
    const r = await tune({
      input: o.input, preset: o.preset, config: o.config, rois: o.roi, gt: o.gt, mask: o.mask, objective, out: o.out,
      budget: o.budget, samples: o.samples, seed: o.seed, log: createLogger(process.env.TESSERA_LOG ?? 'warn'), signal: stopping.signal,
      progress: (l) => process.stderr.write(l + '\n'),
    });
    if (o.json) { process.stdout.write(JSON.stringify(r, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n'); return; }
    const c = r.chosen;
    process.stdout.write(`chose trial ${c.index}${c.feasible ? '' : ' (no trial met the goal: the best found)'}: ${c.label}: ${c.speedup.toFixed(2)}× fewer network voxels (${c.wallSpeedup.toFixed(2)}× wall), Dice to one-stage ${c.agreement.toFixed(4)}, recall ${c.recall.toFixed(3)}${c.gtDice !== undefined ? `, Dice to labels ${c.gtDice.toFixed(4)}` : ''}\nwrote ${r.files.config}, ${r.files.table}, ${r.files.plot}, ${r.files.report}; tune cost ${r.cost.seconds} s = ${r.cost.ratio}× the one-stage reference (${r.cost.runs} runs, ${r.cost.reusedRuns} reused)\n`);
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
  .option('--distributed', 'instead: embedded vs NATS with 1 and 2 workers, and the coordinator\'s control plane over the FAFB grid (starts its own nats-server)')
  .option('--chaos', 'instead: the chaos benchmark (distributed runs under ≥ --kills random faults of every role over its own nats-server; outputs compared bit for bit with the embedded runs; writes bench/chaos figures)')
  .option('--kills <n>', 'faults in all for --chaos (default 100; --quick: 12)', positiveIntArg('--kills'))
  .option('--remote', 'instead: input reads over the network — MB/s and read amplification from https:// and s3:// (real servers on loopback) against local disk, Zarr v3 shards with small inner chunks (writes docs figures to stdout)')
  .option('--fafb-sim', 'instead: the FAFB scale simulation (the real coordinator, workers and merger at full FAFB size over its own nats-server, cost-model workers; writes bench/fafb-sim figures)')
  .action(async (o) => {
    // Benchmarks load only here (a worker never imports them); a packed install leaves them out.
    const bench = <T>(load: () => Promise<T>): Promise<T> => load().catch((err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
      throw new InvalidArgumentError('the benchmarks run from a clone of the repository (bench/ is not in the installed package)');
    });
    if (o.chaos) {
      const { formatChaosReport, runChaosBench } = await bench(() => import('../../bench/chaos.ts'));
      const r = await runChaosBench({ dir: o.dir === 'bench-results' ? undefined : o.dir, quick: o.quick, kills: o.kills, seed: o.seed === 7 ? undefined : o.seed, json: o.json });
      process.stdout.write(formatChaosReport(r));
      if (!r.passed) process.exitCode = 1;
      return;
    }
    if (o.remote) {
      const { formatRemoteReport, runRemoteBench } = await bench(() => import('../../bench/remote.ts'));
      process.stdout.write(formatRemoteReport(await runRemoteBench({ dir: o.dir === 'bench-results' ? undefined : o.dir, quick: o.quick, json: o.json })));
      return;
    }
    if (o.fafbSim) {
      const { formatFafbSim, runFafbSim } = await bench(() => import('../../bench/fafb-sim.ts'));
      process.stdout.write(formatFafbSim(await runFafbSim({ dir: o.dir, quick: o.quick, json: o.json })));
      return;
    }
    if (o.distributed) {
      const { formatDistributedReport, runDistributedBench } = await bench(() => import('../../bench/distributed.ts'));
      process.stdout.write(formatDistributedReport(await runDistributedBench({ dir: o.dir, quick: o.quick, json: o.json })));
      return;
    }
    if (o.scale) {
      const { formatScaleReport, runScaleBench } = await bench(() => import('../../bench/scale.ts'));
      const r = await runScaleBench({ quick: o.quick, json: o.json });
      process.stdout.write(formatScaleReport(r));
      return;
    }
    const { runBench } = await bench(() => import('../../bench/bench.ts'));
    await runBench(o);
  });

program.command('demo')
  .description('synthesize a small EM volume, segment it with the embedded runner, score it')
  .option('--dir <dir>', 'working directory', 'work/demo')
  .action(async (o) => {
    await (await import('./demo.ts')).runDemo(o.dir);
  });

// `tessera … | head` closes the pipe early: every command stops quietly there.
exitQuietlyOnEpipe();

// --debug anywhere on the line: errors with their stack (and causes); without it, one line.
const debug = process.argv.includes('--debug');
program.addHelpText('after', '\nAdd --debug to any command to see the stack of an error.');
try {
  await program.parseAsync(process.argv.filter((a) => a !== '--debug'));
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander printed its own parse errors; an InvalidArgumentError thrown by an action is ours
    // to print. Help and version are not errors.
    if (!usagePrinted && err.exitCode !== 0) process.stderr.write(`tessera: ${err.message}\n`);
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (debug) {
    process.stderr.write(`tessera: ${(err as Error)?.stack ?? String(err)}\n`);
    for (let c = (err as Error)?.cause; c; c = (c as Error).cause) process.stderr.write(`caused by: ${(c as Error)?.stack ?? String(c)}\n`);
    process.exitCode = 2;
  } else {
    const known = isTesseraError(err) || err instanceof InvalidArgumentError || err instanceof RangeError || typeof (err as NodeJS.ErrnoException)?.code === 'string';
    process.stderr.write(`tessera: ${oneLine(err)}${known ? '' : ' (--debug shows where)'}\n`);
    process.exitCode = 2;
  }
}
