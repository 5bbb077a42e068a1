// Every JetStream name a run uses, in one place. Everything is namespaced by the run id, so
// two runs on one broker never see each other's tasks, results or consumers:
//
//   stream   TESSERA_<run>_TASKS     subjects tessera.<run>.task.<role>.<kind>   WorkQueue, file
//   consumer <role>                  filter   tessera.<run>.task.<role>.>        pull, explicit ack
//   stream   TESSERA_<run>_RESULTS   subject  tessera.<run>.result               WorkQueue, file
//   consumer coordinator             the coordinator's, recreated at each start
//   KV       tessera-runs            key <run>: the run record (paths, config, identity, status)
//
// Roles: `worker` runs the per-chunk kinds that need the models or write the output (stage1,
// stage2, predict, blend, paste, relabel); `merger` runs the kinds that resolve chunk borders (boxes
// across chunks, instance faces, the levels of the instance-id reduction). Non-overlapping
// filters, as a WorkQueue stream requires.
import type { TaskKind } from '../tasks/graph.ts';
import { ConfigError } from '../errors.ts';

export type Role = 'worker' | 'merger';

const ROLE_OF: Readonly<Record<string, Role>> = {
  stage1: 'worker',
  stage2: 'worker',
  predict: 'worker',
  blend: 'worker',
  paste: 'worker',
  relabel: 'worker',
  boxes: 'merger',
  faces: 'merger',
};

// The levels of the instance-id reduction (merge1, resolve2 …), by name: the bus needs the
// names only, not the task graph.
const REDUCTION = /^(merge|resolve)[1-9][0-9]*$/;

/** The role that runs a task kind (every level of the instance-id reduction is the merger's). */
export function roleOf(kind: TaskKind): Role {
  const r = ROLE_OF[kind] ?? (REDUCTION.test(kind) ? 'merger' : undefined);
  if (!r) throw new RangeError(`no role runs task kind ${kind}`);
  return r;
}

export const RUNS_BUCKET = 'tessera-runs';

const RUN_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** A run id usable in subjects, stream names and KV keys, or a ConfigError naming the rule. */
export function checkRunId(run: string): string {
  if (!RUN_ID.test(run)) throw new ConfigError('run', `"${run}" must be 1–64 letters, digits, '-' or '_' (it names subjects and streams)`);
  return run;
}

export interface RunNames {
  run: string;
  tasksStream: string;
  resultsStream: string;
  /** Subject of one task kind's messages. */
  task(kind: TaskKind): string;
  /** Filter of a role's consumer. */
  taskFilter(role: Role): string;
  /** Durable consumer name of a role. */
  consumer(role: Role): string;
  result: string;
  resultsConsumer: string;
}

export function runNames(run: string): RunNames {
  checkRunId(run);
  return {
    run,
    tasksStream: `TESSERA_${run}_TASKS`,
    resultsStream: `TESSERA_${run}_RESULTS`,
    task: (kind) => `tessera.${run}.task.${roleOf(kind)}.${kind}`,
    taskFilter: (role) => `tessera.${run}.task.${role}.>`,
    consumer: (role) => role,
    result: `tessera.${run}.result`,
    resultsConsumer: 'coordinator',
  };
}
