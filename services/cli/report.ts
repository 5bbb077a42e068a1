// The end of a run on the terminal: one summary line (or the JSON report), the failures, and
// the exit code (1 failed, 130/143 interrupted by a signal, 0 complete).
import type { RunReport } from '../../shared/index.ts';

/**
 * A reader that stops early (`tessera status OUT | head -5`) closes the pipe: the next write
 * fails with EPIPE, emitted on stdout, which would end the process with a stack trace. Nothing
 * is lost by stopping there: exit quietly with the code the command has so far.
 */
export function exitQuietlyOnEpipe(): void {
  if (!process.stdout.listeners('error').includes(onStdoutError)) process.stdout.on('error', onStdoutError);
}

function onStdoutError(err: NodeJS.ErrnoException): void {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
}

export function printReport(report: RunReport, output: string, json: boolean, signalled: number): number {
  exitQuietlyOnEpipe();
  if (report.status === 'interrupted' && !report.failures.length) {
    // One line: where it stopped and how to go on.
    if (json) process.stdout.write(JSON.stringify(report) + '\n');
    const done = Object.values(report.tasks).reduce((n, t) => n + t.ran + t.reused, 0);
    const total = Object.values(report.tasks).reduce((n, t) => n + t.total, 0);
    process.stderr.write(`${report.mode} interrupted after ${report.seconds.total} s (${done} / ${total} tasks done) → ${output}; re-run the same command to resume\n`);
    return signalled || 130;
  }
  if (json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stderr.write(`${report.mode} ${report.status}: ${report.voxels} voxels in ${report.seconds.total} s (${(report.voxelsPerSecond / 1e6).toFixed(2)} Mvox/s) → ${output}\n`);
  if (!json && report.mask) {
    const m = report.mask;
    const tasks = Object.entries(m.skippedTasks).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
    process.stderr.write(`tissue mask ${m.path}: ${m.skippedVoxels} voxels skipped (${(100 * m.skippedFraction).toFixed(1)} % of the chunks), ${m.maskedVoxels} set to background; tasks skipped: ${tasks}\n`);
  }
  const gone = report.inputMissingSkipped;
  if (!json && gone && Object.keys(gone.skippedTasks).length) {
    process.stderr.write(`missing input: ${gone.skippedVoxels} voxels skipped as background (no stored chunk in reach); tasks skipped: ${Object.entries(gone.skippedTasks).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
  }
  if (report.failures.length) {
    const skipped = Object.values(report.tasks).reduce((n, t) => n + t.skipped, 0);
    process.stderr.write(`${report.failures.length} task(s) failed${skipped ? ` (${skipped} more skipped because they need them)` : ''}; re-run the same command to retry them:\n${report.failures.map((f) => `  ${f.task}: ${f.error}`).join('\n')}\n`);
    return 1;
  }
  if (report.status === 'interrupted') {
    process.stderr.write('interrupted; re-run the same command to resume\n');
    return signalled || 130;
  }
  return 0;
}
