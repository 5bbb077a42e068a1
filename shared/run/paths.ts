// Where a run may write. Never into, over or around its input: an output that is the input,
// lies inside it or contains it is refused before anything is touched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../errors.ts';
import { isVirtual } from '../volume/virtual.ts';
import { isRemote } from '../volume/remote.ts';

/** The real path of `p`, resolving symlinks of the part that exists. */
function realish(p: string): string {
  let head = path.resolve(p);
  const tail: string[] = [];
  while (!fs.existsSync(head)) {
    const up = path.dirname(head);
    if (up === head) break;
    tail.unshift(path.basename(head));
    head = up;
  }
  return path.join(fs.realpathSync(head), ...tail);
}

function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export function checkOutputPath(input: string, output: string, what = 'output'): void {
  // A virtual: string is an input spec, never a place to write.
  if (isVirtual(output)) throw new ConfigError(what, `${output} is a virtual: input, not a path to write to`);
  if (isRemote(output)) throw new ConfigError(what, `${output}: writing to a URL is not supported yet; give a local (or RWX volume) path`);
  // A virtual: or URL input has no local files for the output to overwrite.
  if (isVirtual(input) || isRemote(input)) return;
  const i = realish(input);
  const o = realish(output);
  if (i === o) throw new ConfigError(what, `${output} is the input itself; choose another ${what} path`);
  if (within(o, i)) throw new ConfigError(what, `${output} lies inside the input ${input}; choose a path outside it`);
  if (within(i, o)) throw new ConfigError(what, `${output} contains the input ${input}; writing there would destroy it`);
}
