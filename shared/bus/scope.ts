// Which work a message belongs to. A scope is one identity over one ROI in one generation of the
// output: it begins at the coordinator epoch `scopeEpoch` (the run record's) and lasts while
// restarts describe the same work. A task or result of the scope — whichever epoch of it
// published the task — is good; one of an older scope is stale, never run or recorded.
import type { RunRecord } from './messages.ts';

export type Scope = Pick<RunRecord, 'identity' | 'epoch' | 'scopeEpoch'>;

/** Why a message is not of `scope` (undefined: it is). */
export type Staleness = 'identity' | 'epoch';

export function staleness(m: { identity: string; epoch: number }, scope: Pick<Scope, 'identity' | 'scopeEpoch'>): Staleness | undefined {
  if (m.epoch < scope.scopeEpoch) return 'epoch';
  if (m.identity !== scope.identity) return 'identity';
  return undefined;
}

/**
 * The scope a coordinator starting at `epoch` works in: the previous record's when it describes
 * the same work (same identity and ROI, the output resumed, not overwritten), else a new one.
 */
export function nextScope(prev: Pick<RunRecord, 'identity' | 'roi' | 'scopeEpoch' | 'epoch'> | undefined, now: Pick<RunRecord, 'identity' | 'roi'>, o: { epoch: number; resumed: boolean }): { scopeEpoch: number; changed: boolean } {
  const same = !!prev && o.resumed && prev.identity === now.identity
    && JSON.stringify([prev.roi.begin, prev.roi.end]) === JSON.stringify([now.roi.begin, now.roi.end]);
  return same ? { scopeEpoch: prev.scopeEpoch, changed: false } : { scopeEpoch: o.epoch, changed: !!prev };
}
