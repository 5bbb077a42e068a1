// How this process runs Tessera's TypeScript: natively (Node ≥ 22.18 strips types), compiled
// (the packed tarball's dist/*.js), or through tsx (Node 20 on a clone: unsupported, kept so a
// clone still runs there). Threads and child processes started from a module follow the same rule.

/** Node strips TypeScript types itself (process.features.typescript: 'strip' or 'transform'). */
export const NATIVE_TS = !!(process.features as { typescript?: unknown }).typescript;

/** Flags a child `node` needs to run `file`: tsx's loader only for a .ts file on a Node that cannot strip types. */
export function loaderArgs(file: string): string[] {
  return file.endsWith('.ts') && !NATIVE_TS ? ['--import', 'tsx'] : [];
}
