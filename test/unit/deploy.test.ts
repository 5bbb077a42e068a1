// deploy/: the images and the Kubernetes manifests, checked offline (no cluster, no registry,
// no kubectl/kustomize/helm here). What is checked:
//
// - every manifest (and the overlays rendered by the small Kustomize subset below) against the
//   Kubernetes API schemas of kubernetes-models (types, enums, required fields), and against the
//   same models' TypeScript interfaces with the compiler's excess-property check (unknown or
//   misspelt fields, which the schemas let through);
// - Job rules the schemas cannot express (Pod failure policy needs restartPolicy Never, per-index
//   back-off needs an Indexed Job, …);
// - the manifests against the code: every `tessera` subcommand and --flag in container args
//   exists in that command's --help, every TESSERA_* variable is one the code reads, the run
//   config loads with loadConfig, metrics ports agree (flag, annotation, containerPort), GPU and
//   other resources have requests = limits, images name the two Dockerfiles' images, one data
//   volume at one path, NATS user/Secret/Service agree with deploy/k8s/nats/values.yaml;
// - the Dockerfiles with a small linter (pinned FROM tags, non-root USER in the final stage, no
//   secret-looking ENV/ARG values, the tessera entrypoint, every module the CLI imports copied
//   and not excluded by .dockerignore), and the linter itself on bad Dockerfiles;
// - docs/cluster.md: its tessera command lines, YAML blocks and the metric names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import ts from 'typescript';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { checkModels, loadConfig } from '../../shared/config/load.ts';
import { checkRunId } from '../../shared/bus/subjects.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY = path.join(ROOT, 'deploy');
const K8S = path.join(DEPLOY, 'k8s');
const OVERLAYS = ['base', 'overlays/small', 'overlays/fafb'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

// ---------------------------------------------------------------- YAML

function parseYaml(text: string, where: string): Doc[] {
  const docs: Doc[] = [];
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length) throw new Error(`${where}: ${d.errors.map((e) => e.message).join('; ')}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) docs.push(v as Doc);
  }
  return docs;
}

const readYaml = (file: string): Doc[] => parseYaml(fs.readFileSync(file, 'utf8'), path.relative(ROOT, file));

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

// ---------------------------------------------------------------- a small Kustomize

const isObj = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);

/** The strategic-merge key of a list field, or undefined when such a list is replaced whole. */
function mergeKey(field: string, base: unknown[], patch: unknown[]): string | undefined {
  const key = field === 'volumeMounts' ? 'mountPath' : 'name';
  const keyed = (l: unknown[]) => l.every((x) => isObj(x) && typeof x[key] === 'string');
  return keyed(base) && keyed(patch) ? key : undefined;
}

/**
 * The strategic merge the overlays use: maps merge recursively, null deletes a key, lists of
 * objects merge by `name` (containers, env, volumes, ports; volumeMounts by mountPath), every
 * other list (args, podFailurePolicy rules, tolerations) is replaced.
 */
export function strategicMerge(base: unknown, patch: unknown, field = ''): unknown {
  if (isObj(base) && isObj(patch)) {
    const out: Doc = clone(base);
    for (const [k, v] of Object.entries(patch)) {
      if (k === '$patch') throw new Error('$patch directives are not supported by this test');
      if (v === null) delete out[k];
      else out[k] = strategicMerge(base[k], v, k);
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch)) {
    const key = mergeKey(field, base, patch);
    if (key) {
      const out = clone(base) as Doc[];
      for (const p of patch as Doc[]) {
        const i = out.findIndex((b) => b[key] === p[key]);
        if (i >= 0) out[i] = strategicMerge(out[i], p, '') as Doc;
        else out.push(clone(p));
      }
      return out;
    }
  }
  return clone(patch);
}

function podSpecs(doc: Doc): Doc[] {
  if (doc.kind === 'Pod') return [doc.spec];
  const t = doc.spec?.template?.spec;
  return t ? [t] : [];
}

function containersOf(doc: Doc): Doc[] {
  return podSpecs(doc).flatMap((s) => [...(s.initContainers ?? []), ...(s.containers ?? [])]);
}

/** An image reference without its tag or digest. */
function imageName(ref: string): string {
  const noDigest = ref.split('@')[0];
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'patches', 'configMapGenerator', 'generatorOptions', 'images']);

/** `kustomize build DIR` for the subset the overlays use: resources, generators, patches, images. */
export function kustomize(dir: string): Doc[] {
  const file = path.join(dir, 'kustomization.yaml');
  const where = path.relative(ROOT, file);
  const [k] = readYaml(file);
  assert.equal(k.apiVersion, 'kustomize.config.k8s.io/v1beta1', `${where}: apiVersion`);
  assert.equal(k.kind, 'Kustomization', `${where}: kind`);
  for (const key of Object.keys(k)) assert.ok(KUSTOMIZATION_KEYS.has(key), `${where}: "${key}" is not in the Kustomize subset this test renders (add it to kustomize() here)`);
  const docs: Doc[] = [];
  for (const r of (k.resources ?? []) as string[]) {
    const p = path.resolve(dir, r);
    assert.ok(fs.existsSync(p), `${where}: resource ${r} not found`);
    docs.push(...(fs.statSync(p).isDirectory() ? kustomize(p) : readYaml(p)));
  }
  const gens = (k.configMapGenerator ?? []) as Doc[];
  if (gens.length) {
    // Name-suffix hashes and the rewriting of references to them are not implemented here.
    assert.equal(k.generatorOptions?.disableNameSuffixHash, true, `${where}: generators need generatorOptions.disableNameSuffixHash: true`);
  }
  for (const g of gens) {
    const data: Record<string, string> = {};
    for (const f of (g.files ?? []) as string[]) {
      const [key, rel] = f.includes('=') ? f.split('=', 2) : [path.basename(f), f];
      data[key] = fs.readFileSync(path.resolve(dir, rel), 'utf8');
    }
    for (const l of (g.literals ?? []) as string[]) {
      const i = l.indexOf('=');
      assert.ok(i > 0, `${where}: literal "${l}" is not KEY=VALUE`);
      data[l.slice(0, i)] = l.slice(i + 1);
    }
    const behavior = g.behavior ?? 'create';
    const i = docs.findIndex((d) => d.kind === 'ConfigMap' && d.metadata?.name === g.name);
    if (behavior === 'create') {
      assert.equal(i, -1, `${where}: ConfigMap ${g.name} exists already (use behavior: replace or merge)`);
      docs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name }, data });
    } else {
      assert.ok(i >= 0, `${where}: ConfigMap ${g.name} to ${behavior} is not in the resources`);
      docs[i] = { ...docs[i], data: behavior === 'replace' ? data : { ...docs[i].data, ...data } };
    }
  }
  for (const p of (k.patches ?? []) as Doc[]) {
    const patches = p.path ? readYaml(path.resolve(dir, p.path)) : parseYaml(p.patch, where);
    for (const patch of patches) {
      const kind = p.target?.kind ?? patch.kind;
      const name = p.target?.name ?? patch.metadata?.name;
      const i = docs.findIndex((d) => d.kind === kind && d.metadata?.name === name && (!patch.apiVersion || d.apiVersion === patch.apiVersion));
      assert.ok(i >= 0, `${where}: patch ${p.path ?? ''} targets ${kind}/${name}, which is not in the resources`);
      docs[i] = strategicMerge(docs[i], patch) as Doc;
    }
  }
  for (const img of (k.images ?? []) as Doc[]) {
    for (const d of docs) {
      for (const c of containersOf(d)) {
        if (typeof c.image === 'string' && imageName(c.image) === img.name) {
          c.image = `${img.newName ?? img.name}${img.newTag !== undefined ? `:${img.newTag}` : ''}${img.digest ? `@${img.digest}` : ''}`;
        }
      }
    }
  }
  return docs;
}

// ---------------------------------------------------------------- schema validation

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const MODELS: Record<string, { model: new (d: any) => { validate(): void }; iface: string; from: string }> = {
  'batch/v1 Job': { model: Job, iface: 'IJob', from: 'kubernetes-models/batch/v1/Job' },
  'v1 ConfigMap': { model: ConfigMap, iface: 'IConfigMap', from: 'kubernetes-models/v1/ConfigMap' },
  'v1 Secret': { model: Secret, iface: 'ISecret', from: 'kubernetes-models/v1/Secret' },
  'v1 PersistentVolumeClaim': { model: PersistentVolumeClaim, iface: 'IPersistentVolumeClaim', from: 'kubernetes-models/v1/PersistentVolumeClaim' },
};

function validateSchema(doc: Doc, where: string): void {
  const m = MODELS[`${doc.apiVersion} ${doc.kind}`];
  assert.ok(m, `${where}: ${doc.apiVersion} ${doc.kind} has no schema here (add it to MODELS)`);
  try {
    new m.model(doc).validate();
  } catch (err) {
    assert.fail(`${where}: ${doc.kind}/${doc.metadata?.name}: ${(err as Error).message}`);
  }
}

/**
 * Type-check documents against kubernetes-models' interfaces: an object literal assigned to a
 * declared type gets the compiler's excess-property check at every depth, so an unknown or
 * misspelt field is an error. Returns the errors, each prefixed with its document's label.
 */
function typeCheck(docs: { label: string; doc: Doc }[]): string[] {
  const file = path.join(DEPLOY, '__manifests_typecheck__.ts'); // virtual: never written
  const used = new Set<string>();
  const decls = docs.map(({ doc }, i) => {
    const m = MODELS[`${doc.apiVersion} ${doc.kind}`];
    used.add(`${doc.apiVersion} ${doc.kind}`);
    return `export const d${i}: ${m.iface} = ${JSON.stringify(doc, null, 1)};`;
  });
  const imports = [...used].map((k) => `import type { ${MODELS[k].iface} } from '${MODELS[k].from}';`);
  const source = [...imports, ...decls].join('\n');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true, noEmit: true, skipLibCheck: true, types: [], lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) => (path.resolve(name) === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (path.resolve(name) === file ? source : readFile(name));
  const program = ts.createProgram([file], options, host);
  const sf = program.getSourceFile(file)!;
  const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
  return diags.map((d) => {
    const line = d.start !== undefined ? sf.getLineAndCharacterOfPosition(d.start).line : -1;
    const before = source.split('\n').slice(0, line + 1).reverse().find((l) => l.startsWith('export const d'));
    const i = before ? Number(/^export const d(\d+)/.exec(before)![1]) : -1;
    return `${i >= 0 ? docs[i].label : 'imports'}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}

// ---------------------------------------------------------------- Job rules the schema lacks

function jobRules(doc: Doc, where: string): void {
  const s = doc.spec;
  const tpl = s.template.spec;
  const names = new Set([...(tpl.containers ?? []), ...(tpl.initContainers ?? [])].map((c: Doc) => c.name));
  const rules = (s.podFailurePolicy?.rules ?? []) as Doc[];
  if (s.podFailurePolicy) assert.equal(tpl.restartPolicy, 'Never', `${where}: a podFailurePolicy needs restartPolicy Never`);
  assert.ok(['Never', 'OnFailure'].includes(tpl.restartPolicy), `${where}: a Job's pods need restartPolicy Never or OnFailure`);
  if (s.completionMode === 'Indexed') assert.ok(Number.isInteger(s.completions), `${where}: an Indexed Job needs completions`);
  if (s.backoffLimitPerIndex !== undefined || s.maxFailedIndexes !== undefined) {
    assert.equal(s.completionMode, 'Indexed', `${where}: backoffLimitPerIndex/maxFailedIndexes need completionMode Indexed`);
  }
  if (s.maxFailedIndexes !== undefined) {
    assert.ok(s.backoffLimitPerIndex !== undefined, `${where}: maxFailedIndexes needs backoffLimitPerIndex`);
    assert.ok(s.maxFailedIndexes <= s.completions, `${where}: maxFailedIndexes ${s.maxFailedIndexes} > completions ${s.completions}`);
  }
  if (s.parallelism !== undefined && s.completions !== undefined) assert.ok(s.parallelism <= s.completions, `${where}: parallelism > completions`);
  for (const r of rules) {
    if (r.action === 'FailIndex') assert.ok(s.backoffLimitPerIndex !== undefined, `${where}: action FailIndex needs backoffLimitPerIndex`);
    const e = r.onExitCodes;
    if (e) {
      if (e.containerName !== undefined) assert.ok(names.has(e.containerName), `${where}: podFailurePolicy names container "${e.containerName}", which the pod does not have`);
      if (e.operator === 'In') assert.ok(!e.values.includes(0), `${where}: exit code 0 cannot be matched with operator In`);
    }
    assert.ok(!!e !== !!r.onPodConditions, `${where}: a podFailurePolicy rule needs exactly one of onExitCodes, onPodConditions`);
  }
}

// ---------------------------------------------------------------- the code's interface

const exec = promisify(execFile);

async function help(cmd: string[]): Promise<string> {
  const { stdout } = await exec(process.execPath, [path.join(ROOT, 'bin/tessera.mjs'), ...cmd, '--help'], { cwd: ROOT, timeout: 60_000 });
  return stdout;
}

interface Cli {
  commands: Set<string>;
  flags: Map<string, Set<string>>;
}

let cliPromise: Promise<Cli> | undefined;
/** Subcommands from `tessera --help`, and each service's flags from `tessera CMD --help`. */
function cli(): Promise<Cli> {
  cliPromise ??= (async () => {
    const top = await help([]);
    const commands = new Set<string>();
    let inCommands = false;
    for (const line of top.split('\n')) {
      if (/^Commands:/.test(line)) inCommands = true;
      else if (/^\S/.test(line)) inCommands = false;
      else if (inCommands) {
        const m = /^ {2}([a-z][\w-]*)\b/.exec(line);
        if (m) commands.add(m[1]);
      }
    }
    const names = ['coordinator', 'worker', 'merger', 'status', 'synth'];
    const texts = await Promise.all(names.map((c) => help([c])));
    const flags = new Map<string, Set<string>>();
    names.forEach((c, i) => {
      const set = new Set<string>(['--debug']); // accepted anywhere (services/cli/main.ts)
      for (const line of texts[i].split('\n')) {
        const m = /^\s+(?:-\w, )?(--[a-z][\w-]*)/.exec(line);
        if (m) set.add(m[1]);
      }
      flags.set(c, set);
    });
    return { commands, flags };
  })();
  return cliPromise;
}

/** TESSERA_* variables the code reads (`env.TESSERA_…` in shared/ and services/). */
function codeEnvVars(): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mjs|js)$/.test(e.name)) for (const m of fs.readFileSync(p, 'utf8').matchAll(/\benv\.(TESSERA_[A-Z0-9_]*[A-Z0-9])\b/g)) found.add(m[1]);
    }
  };
  walk(path.join(ROOT, 'shared'));
  walk(path.join(ROOT, 'services'));
  return found;
}

/** Flags of a command line (`--flag value` or `--flag=value`) → their values (undefined: a switch). */
function flagsOf(args: string[]): { flag: string; value?: string }[] {
  const out: { flag: string; value?: string }[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out.push({ flag: a.slice(0, eq), value: a.slice(eq + 1) });
    else out.push({ flag: a, value: args[i + 1] !== undefined && !args[i + 1].startsWith('--') ? args[i + 1] : undefined });
  }
  return out;
}

const flagValue = (args: string[], flag: string): string | undefined => flagsOf(args).find((f) => f.flag === flag)?.value;

/** Kubernetes' $(VAR) expansion of args from the container's env (ConfigMap refs resolved). */
function expand(c: Doc, configMaps: Doc[], where: string): string[] {
  const env = new Map<string, string>();
  for (const e of (c.env ?? []) as Doc[]) {
    if (e.value !== undefined) env.set(e.name, String(e.value));
    else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const cm = configMaps.find((m) => m.metadata.name === ref.name);
      assert.ok(cm, `${where}: env ${e.name} reads ConfigMap ${ref.name}, which the overlay does not make`);
      assert.ok(cm.data && ref.key in cm.data, `${where}: env ${e.name} reads key ${ref.key}, which ConfigMap ${ref.name} lacks`);
      env.set(e.name, cm.data[ref.key]);
    } else env.set(e.name, `<${e.name}>`);
  }
  return ((c.args ?? []) as unknown[]).map((a) => String(a).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, v: string) => {
    assert.ok(env.has(v), `${where}: args use $(${v}), which the container's env does not define (Kubernetes would pass it literally)`);
    return env.get(v)!;
  }));
}

const within = (p: string, dir: string) => {
  const rel = path.posix.relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
};

// ---------------------------------------------------------------- Dockerfile lint

interface Instruction { op: string; args: string; line: number }

export function dockerInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let l = lines[i];
    if (/^\s*(#|$)/.test(l)) continue;
    while (/\\\s*$/.test(l) && i + 1 < lines.length) {
      i++;
      if (/^\s*#/.test(lines[i])) continue; // comments inside a continuation are dropped
      l = l.replace(/\\\s*$/, ' ') + lines[i];
    }
    const m = /^\s*(\w+)\s*(.*)$/.exec(l);
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start + 1 });
  }
  return out;
}

const SECRET_NAME = /(PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|PRIVATE|(^|_)API_?KEY|(^|_)KEY)$/i;

/** Lint a Dockerfile; returns the findings (empty: clean). */
export function lintDockerfile(text: string): string[] {
  const findings: string[] = [];
  const ins = dockerInstructions(text);
  const stages: { name?: string; ins: Instruction[] }[] = [];
  for (const i of ins) {
    if (i.op === 'FROM') {
      const words = i.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const image = words[0] ?? '';
      const as = words.length >= 3 && words[1].toUpperCase() === 'AS' ? words[2] : undefined;
      const known = stages.some((s) => s.name === image);
      if (!known) {
        if (image.includes('$')) findings.push(`line ${i.line}: FROM ${image}: a variable image cannot be checked for a pinned tag`);
        else if (image !== 'scratch') {
          const digest = image.includes('@sha256:');
          const tag = image.split('@')[0].slice(imageName(image).length + 1);
          if (!tag && !digest) findings.push(`line ${i.line}: FROM ${image}: no tag (means latest)`);
          else if (tag === 'latest') findings.push(`line ${i.line}: FROM ${image}: the latest tag is not pinned`);
          else if (!digest && !/^v?\d+\.\d+\.\d+/.test(tag)) findings.push(`line ${i.line}: FROM ${image}: tag "${tag}" is not an exact major.minor.patch version`);
        }
      }
      stages.push({ name: as, ins: [] });
      continue;
    }
    if (!stages.length) {
      if (i.op !== 'ARG') findings.push(`line ${i.line}: ${i.op} before the first FROM`);
      continue;
    }
    stages[stages.length - 1].ins.push(i);
    // Secret-looking names given a value: ENV and ARG, and NAME=value assignments in RUN.
    const pairs: [string, string][] = [];
    if (i.op === 'ENV' || i.op === 'ARG') {
      const kv = [...i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S+)/g)].map((m) => [m[1], m[2]] as [string, string]);
      if (kv.length) pairs.push(...kv);
      else if (i.op === 'ENV') {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)\s+(.+)$/.exec(i.args); // legacy ENV NAME value
        if (m) pairs.push([m[1], m[2]]);
      }
    } else if (i.op === 'RUN') {
      for (const m of i.args.matchAll(/(?:^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|[^\s;&|]+)/g)) pairs.push([m[1], m[2]]);
    }
    for (const [name, value] of pairs) {
      if (SECRET_NAME.test(name) && value.replace(/^["']|["']$/g, '') !== '') findings.push(`line ${i.line}: ${i.op} sets ${name}: a secret-looking name with a value in the image`);
    }
  }
  if (!stages.length) return [...findings, 'no FROM'];
  const final = stages[stages.length - 1].ins;
  const users = final.filter((i) => i.op === 'USER');
  const user = users.length ? users[users.length - 1].args.split(':')[0] : undefined;
  if (user === undefined) findings.push('the final stage sets no USER (runs as root)');
  else if (user === 'root' || user === '0') findings.push(`the final stage runs as ${user}`);
  const eps = final.filter((i) => i.op === 'ENTRYPOINT');
  const ep = eps.length ? eps[eps.length - 1].args : '';
  let epArgs: unknown;
  try {
    epArgs = JSON.parse(ep);
  } catch {
    epArgs = undefined;
  }
  if (!Array.isArray(epArgs)) findings.push('ENTRYPOINT missing or not in exec (JSON) form');
  else if (!(epArgs[0] === 'node' && epArgs[1] === '/app/bin/tessera.mjs' && epArgs.length === 2)) findings.push(`ENTRYPOINT ${ep} is not ["node", "/app/bin/tessera.mjs"]`);
  return findings;
}

/** Where each repository file lands in the final stage (COPY from the build context). */
function copiedTo(text: string): { src: string; dest: string; dir: boolean }[] {
  const ins = dockerInstructions(text);
  const lastFrom = ins.map((i) => i.op).lastIndexOf('FROM');
  let workdir = '/';
  const out: { src: string; dest: string; dir: boolean }[] = [];
  for (const i of ins.slice(lastFrom + 1)) {
    if (i.op === 'WORKDIR') workdir = path.posix.resolve(workdir, i.args);
    if (i.op !== 'COPY' && i.op !== 'ADD') continue;
    const words = i.args.split(/\s+/);
    if (words.some((w) => w.startsWith('--from'))) continue;
    const parts = words.filter((w) => !w.startsWith('--'));
    const dest = path.posix.resolve(workdir, parts[parts.length - 1]);
    const srcs = parts.slice(0, -1);
    const toDir = srcs.length > 1 || parts[parts.length - 1].endsWith('/');
    for (const s of srcs) {
      const src = path.posix.normalize(s).replace(/\/$/, '');
      const isDir = fs.existsSync(path.join(ROOT, src)) && fs.statSync(path.join(ROOT, src)).isDirectory();
      out.push({ src, dest: isDir ? dest : toDir ? path.posix.join(dest, path.posix.basename(src)) : dest, dir: isDir });
    }
  }
  return out;
}

function landsAt(file: string, copies: { src: string; dest: string; dir: boolean }[]): string | undefined {
  for (const c of copies) {
    if (c.dir && within(file, c.src)) return path.posix.join(c.dest, path.posix.relative(c.src, file));
    if (!c.dir && c.src === file) return c.dest;
  }
  return undefined;
}

/** .dockerignore patterns (no negation) → does the pattern exclude this repository path? */
function ignored(file: string, patterns: string[]): string | undefined {
  const toRe = (p: string) => new RegExp('^' + p.replace(/\/$/, '').split('/').map((seg) => (seg === '**' ? '(?:.*)' : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))).join('/').replace('(?:.*)/', '(?:.*/)?') + '$');
  const parts = file.split('/');
  for (const p of patterns) {
    const re = toRe(p.replace(/^\//, ''));
    for (let n = 1; n <= parts.length; n++) if (re.test(parts.slice(0, n).join('/'))) return p;
  }
  return undefined;
}

/** Repository files the CLI loads: static imports and `new URL('./x', import.meta.url)` from bin/tessera.mjs. */
function moduleClosure(): string[] {
  const seen = new Set<string>();
  const queue = ['bin/tessera.mjs'];
  while (queue.length) {
    const f = queue.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const src = fs.readFileSync(path.join(ROOT, f), 'utf8');
    // The benchmarks load only for `tessera bench` (a dynamic import the images leave out).
    const refs = [
      ...[...src.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]).filter((r) => !/(^|\/)bench\//.test(r)),
      ...[...src.matchAll(/new URL\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*,\s*import\.meta\.url/g)].map((m) => m[1]),
    ];
    for (const r of refs) {
      const p = path.posix.normalize(path.posix.join(path.posix.dirname(f), r));
      if (fs.existsSync(path.join(ROOT, p))) queue.push(p);
    }
  }
  return [...seen].sort();
}

// ---------------------------------------------------------------- fixtures

interface Rendered { name: string; docs: Doc[] }
const rendered: Rendered[] = OVERLAYS.map((o) => ({ name: o, docs: kustomize(path.join(K8S, o)) }));
const prereq = yamlFiles(path.join(K8S, 'prereq')).flatMap(readYaml);
const pvc = prereq.find((d) => d.kind === 'PersistentVolumeClaim')!;
const secretTemplate = prereq.find((d) => d.kind === 'Secret')!;
const natsValues = readYaml(path.join(K8S, 'nats/values.yaml'))[0];
const baseKustomization = readYaml(path.join(K8S, 'base/kustomization.yaml'))[0];
const DOCKERFILES = ['Dockerfile.cpu', 'Dockerfile.gpu'].map((f) => ({ file: f, text: fs.readFileSync(path.join(DEPLOY, 'docker', f), 'utf8') }));

const jobs = (r: Rendered) => r.docs.filter((d) => d.kind === 'Job');
const component = (r: Rendered, c: string) => {
  const j = jobs(r).filter((d) => d.spec.template.metadata?.labels?.['app.kubernetes.io/component'] === c);
  assert.equal(j.length, 1, `${r.name}: one ${c} Job`);
  return j[0];
};
const main = (job: Doc) => {
  const cs = job.spec.template.spec.containers as Doc[];
  assert.equal(cs.length, 1, `${job.metadata.name}: one container`);
  return cs[0];
};

// ---------------------------------------------------------------- tests

test('deploy: every manifest file and every rendered overlay passes the Kubernetes schemas', () => {
  assert.ok(rendered.every((r) => r.docs.length >= 4), 'base and overlays render a coordinator, workers, a merger and the run ConfigMap');
  for (const f of yamlFiles(K8S)) {
    // Overlay patches are partial objects: they are validated as rendered.
    if (f.includes(`${path.sep}nats${path.sep}`) || f.includes(`${path.sep}overlays${path.sep}`) || f.endsWith('kustomization.yaml')) continue;
    for (const d of readYaml(f)) validateSchema(d, path.relative(ROOT, f));
  }
  for (const r of rendered) for (const d of r.docs) validateSchema(d, `kustomize ${r.name}`);
  // The validator is live: a wrong enum and a wrong type are refused.
  const bad = clone(component(rendered[0], 'worker'));
  bad.spec.completionMode = 'Sometimes';
  assert.throws(() => new Job(bad).validate(), /completionMode/);
  const bad2 = clone(component(rendered[0], 'worker'));
  bad2.spec.template.spec.terminationGracePeriodSeconds = 'a minute';
  assert.throws(() => new Job(bad2).validate(), /terminationGracePeriodSeconds/);
});

test('deploy: no unknown or misspelt fields (type-checked against kubernetes-models interfaces)', () => {
  const docs: { label: string; doc: Doc }[] = [];
  for (const f of yamlFiles(K8S)) {
    if (f.includes(`${path.sep}nats${path.sep}`) || f.endsWith('kustomization.yaml')) continue;
    for (const d of readYaml(f)) {
      // Overlay patches are partial objects: checked as rendered below instead.
      if (f.includes(`${path.sep}overlays${path.sep}`)) continue;
      docs.push({ label: path.relative(ROOT, f), doc: d });
    }
  }
  for (const r of rendered) for (const d of r.docs) docs.push({ label: `kustomize ${r.name}: ${d.kind}/${d.metadata?.name}`, doc: d });
  // Negative control in the same program: a misspelt field must be reported, for that document only.
  const typo = clone(component(rendered[0], 'worker'));
  typo.spec.template.spec.terminationGracePeriodSecond = 60;
  docs.push({ label: 'NEGATIVE', doc: typo });
  const errors = typeCheck(docs);
  const negative = errors.filter((e) => e.startsWith('NEGATIVE:'));
  assert.ok(negative.some((e) => e.includes('terminationGracePeriodSecond')), `the misspelt field was not reported: ${errors.join('\n')}`);
  assert.deepEqual(errors.filter((e) => !e.startsWith('NEGATIVE:')), []);
});

test('deploy: Job rules the schema cannot express hold, and the checks catch violations', () => {
  for (const r of rendered) for (const j of jobs(r)) jobRules(j, `${r.name}: Job/${j.metadata.name}`);
  const w = component(rendered[0], 'worker');
  const onFailure = clone(w);
  onFailure.spec.template.spec.restartPolicy = 'OnFailure';
  assert.throws(() => jobRules(onFailure, 'neg'), /restartPolicy Never/);
  const nonIndexed = clone(w);
  delete nonIndexed.spec.completionMode;
  assert.throws(() => jobRules(nonIndexed, 'neg'), /Indexed/);
  const wrongContainer = clone(w);
  wrongContainer.spec.podFailurePolicy.rules[1].onExitCodes.containerName = 'main';
  assert.throws(() => jobRules(wrongContainer, 'neg'), /does not have/);
});

test('deploy: each service\'s shape: Jobs, failure policies, grace periods, mergers that all complete, many GPU workers in fafb', () => {
  const ackWait = loadConfig({ preset: 'fafb' }).nats.ackWait;
  for (const r of rendered) {
    const coord = component(r, 'coordinator');
    const worker = component(r, 'worker');
    const merger = component(r, 'merger');
    assert.equal(coord.spec.completions, 1);
    assert.equal(coord.spec.parallelism, 1, `${r.name}: one coordinator`);
    // Every merger exits 0 when the run ends: each replica is a completion.
    assert.equal(merger.spec.completions, merger.spec.parallelism, `${r.name}: every merger replica completes`);
    assert.equal(worker.spec.completionMode, 'Indexed');
    assert.equal(worker.spec.completions, worker.spec.parallelism, `${r.name}: every worker index runs at once`);
    assert.ok(worker.spec.backoffLimitPerIndex >= 1);
    for (const j of [coord, worker, merger]) {
      const rules = (j.spec.podFailurePolicy?.rules ?? []) as Doc[];
      assert.ok(rules.some((x) => x.action === 'Ignore' && x.onPodConditions?.some((c: Doc) => c.type === 'DisruptionTarget')), `${r.name}: ${j.metadata.name} ignores disruptions`);
      // Workers and the merger hand their tasks back on SIGTERM (nak, ≤ 3 s flush, ≤ 5 s drain);
      // beyond ackWait a grace period buys nothing (the task is redelivered by then).
      const grace = j.spec.template.spec.terminationGracePeriodSeconds;
      assert.ok(grace >= 10 && grace <= ackWait, `${r.name}: ${j.metadata.name} grace ${grace} s outside [10, ackWait ${ackWait}]`);
    }
    assert.ok((worker.spec.podFailurePolicy.rules as Doc[]).some((x) => ['FailIndex', 'FailJob'].includes(x.action) && x.onExitCodes?.values.includes(2)), 'exit 2 (bad config or input) is not retried');
    assert.ok((coord.spec.podFailurePolicy.rules as Doc[]).some((x) => x.action === 'FailJob' && x.onExitCodes?.values.includes(1)), 'a run that ended failed does not restart the coordinator');
    assert.ok(!(coord.spec.podFailurePolicy.rules as Doc[]).some((x) => x.onExitCodes?.values.includes(2)), 'coordinator exit 2 is retried (lock takeover after 60 s)');
  }
  const [, small, fafb] = rendered;
  assert.equal(component(small, 'worker').spec.parallelism, 1, 'small: one GPU worker');
  assert.ok(component(fafb, 'worker').spec.parallelism >= 16, 'fafb: many GPU workers');
  assert.equal(component(small, 'merger').spec.parallelism, 1, 'small: one merger');
  assert.ok(component(fafb, 'merger').spec.parallelism > 1, 'fafb: several mergers share the border tasks');
});

test('deploy: container commands, subcommands, flags and variables exist in the code', async () => {
  const { commands, flags } = await cli();
  for (const c of ['coordinator', 'worker', 'merger', 'status']) assert.ok(commands.has(c), `tessera ${c} is a command`);
  assert.ok(!commands.has('kubernetes'), 'the command list is parsed, not assumed');
  const vars = codeEnvVars();
  for (const v of ['TESSERA_NATS_URL', 'TESSERA_NATS_USER', 'TESSERA_NATS_PASSWORD', 'TESSERA_LOG']) assert.ok(vars.has(v), `the code reads ${v}`);
  for (const r of rendered) {
    const configMaps = r.docs.filter((d) => d.kind === 'ConfigMap');
    for (const j of jobs(r)) {
      const where = `${r.name}: ${j.metadata.name}`;
      for (const c of containersOf(j)) {
        // The image's entrypoint runs every service (a worker exits 143 on SIGTERM by itself).
        assert.equal(c.command, undefined, `${where}: no command override`);
        const args = expand(c, configMaps, where);
        const sub = args[0];
        assert.ok(commands.has(sub) && flags.has(sub), `${where}: "${sub}" is a tessera service command`);
        for (const { flag } of flagsOf(args)) assert.ok(flags.get(sub)!.has(flag), `${where}: tessera ${sub} has no ${flag} (its --help lists ${[...flags.get(sub)!].join(' ')})`);
        assert.ok(!args.includes('--overwrite'), `${where}: --overwrite in a pod would wipe the output on every restart`);
        for (const e of (c.env ?? []) as Doc[]) {
          if (e.name.startsWith('TESSERA_')) assert.ok(vars.has(e.name), `${where}: env ${e.name} is not read by the code (reads: ${[...vars].join(', ')})`);
        }
      }
    }
  }
  // Negative: an unknown flag and an unknown variable are caught by the same checks.
  assert.ok(!flags.get('worker')!.has('--gpus'));
  assert.ok(!vars.has('TESSERA_RUN'));
});

test('deploy: the run: one id, paths on the data volume under --root, the config loads', async () => {
  for (const r of rendered) {
    const configMaps = r.docs.filter((d) => d.kind === 'ConfigMap');
    const [coord, worker, merger] = ['coordinator', 'worker', 'merger'].map((c) => component(r, c));
    const argsOf = (j: Doc) => expand(main(j), configMaps, `${r.name}: ${j.metadata.name}`);
    const [ca, wa, ma] = [coord, worker, merger].map(argsOf);
    const run = flagValue(ca, '--run')!;
    assert.doesNotThrow(() => checkRunId(run), `${r.name}: run id "${run}"`);
    assert.equal(flagValue(wa, '--run'), run, `${r.name}: workers join the coordinator's run`);
    assert.equal(flagValue(ma, '--run'), run, `${r.name}: the merger joins the coordinator's run`);
    // One RWX claim, mounted at the same path in every pod.
    const mounts = new Set<string>();
    for (const j of [coord, worker, merger]) {
      const spec = j.spec.template.spec;
      const vol = (spec.volumes as Doc[]).find((v) => v.persistentVolumeClaim);
      assert.equal(vol?.persistentVolumeClaim.claimName, pvc.metadata.name, `${r.name}: ${j.metadata.name} mounts the data claim`);
      const m = (main(j).volumeMounts as Doc[]).find((x) => x.name === vol!.name);
      assert.ok(m, `${r.name}: ${j.metadata.name} mounts the data volume`);
      mounts.add(m.mountPath);
    }
    assert.equal(mounts.size, 1, `${r.name}: the data volume is mounted at one path in all pods`);
    const data = [...mounts][0];
    for (const a of [wa, ma]) assert.equal(flagValue(a, '--root'), data, `${r.name}: --root is the data mount`);
    const input = flagValue(ca, '--input')!;
    const output = flagValue(ca, '--output')!;
    for (const p of [input, output]) assert.ok(path.posix.isAbsolute(p) && within(p, data), `${r.name}: ${p} lies on the data volume ${data}`);
    assert.ok(!within(output, input) && !within(input, output), `${r.name}: input and output are apart`);
    // The config file: mounted from the run ConfigMap, and it loads.
    const cfgPath = flagValue(ca, '--config')!;
    const spec = coord.spec.template.spec;
    const cfgMount = (main(coord).volumeMounts as Doc[]).find((m) => within(cfgPath, m.mountPath) && m.mountPath !== data);
    assert.ok(cfgMount, `${r.name}: --config ${cfgPath} is on a mounted volume`);
    const cfgVol = (spec.volumes as Doc[]).find((v) => v.name === cfgMount.name);
    assert.ok(cfgVol?.configMap, `${r.name}: --config ${cfgPath} is on a ConfigMap volume`);
    const cm = configMaps.find((m) => m.metadata.name === cfgVol.configMap.name);
    assert.ok(cm, `${r.name}: the config volume is the run ConfigMap`);
    const item = ((cfgVol.configMap.items ?? []) as Doc[]).find((it) => path.posix.join(cfgMount.mountPath, it.path) === cfgPath);
    const key = item ? item.key : path.posix.relative(cfgMount.mountPath, cfgPath);
    const json = cm.data[key];
    assert.ok(typeof json === 'string', `${r.name}: ConfigMap ${cm.metadata.name} has ${key}`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-deploy-'));
    try {
      const file = path.join(dir, 'config.json');
      fs.writeFileSync(file, json);
      const config = loadConfig({ file });
      const doc = JSON.parse(json) as Doc;
      const expected = r.name.endsWith('fafb') ? 'fafb' : 'synthetic-em';
      assert.equal(doc.extends, expected, `${r.name}: the run config extends ${expected}`);
      assert.equal(config.name, expected);
      assert.equal(config.inference.provider, 'cuda', `${r.name}: GPU workers run the CUDA provider`);
      if (expected === 'synthetic-em') {
        // Its models ship in the images at the same path as here (/app/models ↔ models/).
        assert.doesNotThrow(() => checkModels(config));
      } else {
        // Research models are not shipped: they must come from the data volume, by absolute path.
        for (const m of [config.models.fullres, config.models.lowres]) assert.ok(within(m, data), `${r.name}: model ${m} lies on the data volume`);
        assert.equal(config.io.missingChunks, 'fill', 'FAFB is sparse: never-written chunks read as background');
        assert.equal(config.output.format, 'zarr-v3-sharded', 'FAFB output as shards (≈ 10⁹ files otherwise)');
        const inHand = component(r, 'worker').spec.parallelism * Number(flagValue(wa, '--concurrency'));
        assert.ok(config.nats.inFlight >= inHand, `nats.inFlight ${config.nats.inFlight} below the ${inHand} tasks the workers hold at once`);
      }
      // Negative: the same check refuses a config with a bad key.
      fs.writeFileSync(file, JSON.stringify({ ...doc, nats: { ackWait: 0 } }));
      assert.throws(() => loadConfig({ file }), /ackWait/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.ok(pvc.spec.accessModes.includes('ReadWriteMany'), 'the data claim is RWX');
});

test('deploy: metrics ports agree (flag, scrape annotations, containerPort) and /metrics is what the code serves', () => {
  const served = fs.readFileSync(path.join(ROOT, 'services/metrics.ts'), 'utf8');
  const servedPath = /req\.url !== '([^']+)'/.exec(served)?.[1];
  assert.equal(servedPath, '/metrics');
  for (const r of rendered) {
    const configMaps = r.docs.filter((d) => d.kind === 'ConfigMap');
    for (const j of jobs(r)) {
      const where = `${r.name}: ${j.metadata.name}`;
      const a = j.spec.template.metadata?.annotations ?? {};
      const c = main(j);
      const port = flagValue(expand(c, configMaps, where), '--metrics-port');
      assert.ok(port !== undefined && Number(port) > 0, `${where}: --metrics-port set to a fixed port`);
      assert.equal(a['prometheus.io/scrape'], 'true', `${where}: scraped`);
      assert.equal(a['prometheus.io/port'], port, `${where}: annotation port = --metrics-port`);
      assert.equal(a['prometheus.io/path'], servedPath, `${where}: annotation path`);
      assert.ok(((c.ports ?? []) as Doc[]).some((p) => p.containerPort === Number(port) && p.name === 'metrics'), `${where}: containerPort ${port} named metrics`);
    }
  }
});

test('deploy: resources: requests = limits, GPUs only on workers and with the GPU image', () => {
  const quantity = (v: unknown) => String(v);
  for (const r of rendered) {
    for (const j of jobs(r)) {
      const where = `${r.name}: ${j.metadata.name}`;
      for (const c of containersOf(j)) {
        const req = c.resources?.requests ?? {};
        const lim = c.resources?.limits ?? {};
        for (const k of ['cpu', 'memory']) assert.ok(req[k] !== undefined, `${where}: requests ${k}`);
        for (const k of new Set([...Object.keys(req), ...Object.keys(lim)])) assert.equal(quantity(req[k]), quantity(lim[k]), `${where}: ${k} requests = limits`);
        const gpu = lim['nvidia.com/gpu'];
        const isWorker = j.spec.template.metadata.labels['app.kubernetes.io/component'] === 'worker';
        if (isWorker) {
          assert.equal(quantity(gpu), '1', `${where}: one GPU per worker`);
          assert.match(c.image, /tessera-gpu:/, `${where}: the GPU image`);
        } else {
          assert.equal(gpu, undefined, `${where}: no GPU`);
          assert.match(c.image, /tessera-cpu:/, `${where}: the CPU image`);
        }
      }
    }
  }
});

test('deploy: images: one list of names, matching the Dockerfiles and the package version', () => {
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
  const titles = DOCKERFILES.map((d) => /org\.opencontainers\.image\.title="([^"]+)"/.exec(d.text)?.[1]);
  assert.deepEqual(titles, ['tessera-cpu', 'tessera-gpu']);
  const images = baseKustomization.images as Doc[];
  assert.deepEqual(images.map((i) => i.name).sort(), [...titles].sort(), 'kustomization images = the Dockerfiles\' images');
  for (const i of images) assert.equal(String(i.newTag), version, `${i.name}: newTag follows package.json`);
  const refs = new Set(images.map((i) => `${i.newName}:${i.newTag}`));
  for (const r of rendered) {
    for (const d of r.docs) for (const c of containersOf(d)) assert.ok(refs.has(c.image), `${r.name}: image ${c.image} is not one of ${[...refs].join(', ')}`);
  }
  // Negative: an image the list does not name stays unresolved and is caught.
  assert.ok(!refs.has('tessera-gpu'));
});

test('deploy: NATS: Service, user and Secret agree between the Helm values and the pods; no real secrets', () => {
  const readme = fs.readFileSync(path.join(K8S, 'README.md'), 'utf8');
  const release = /helm install (\S+) nats\/nats\b[^\n]*-f deploy\/k8s\/nats\/values\.yaml/.exec(readme)?.[1];
  assert.ok(release, 'deploy/k8s/README.md has the helm install command');
  const c = natsValues.config;
  assert.equal(c.cluster.enabled, true);
  assert.equal(c.cluster.replicas, 3);
  assert.equal(c.jetstream.enabled, true);
  assert.equal(c.jetstream.fileStore.enabled, true);
  assert.equal(c.jetstream.fileStore.pvc.enabled, true);
  const accounts = Object.values(c.merge.accounts) as Doc[];
  const users = accounts.flatMap((a) => (a.users ?? []) as Doc[]);
  for (const r of rendered) {
    for (const j of jobs(r)) {
      const env = new Map<string, Doc>(((main(j).env ?? []) as Doc[]).map((e) => [e.name, e]));
      const where = `${r.name}: ${j.metadata.name}`;
      const url = new URL(env.get('TESSERA_NATS_URL')!.value);
      assert.equal(url.hostname, release, `${where}: TESSERA_NATS_URL names the Helm release's Service`);
      assert.equal(url.port || '4222', String(c.nats?.port ?? 4222), `${where}: the client port`);
      assert.equal(url.username, '', `${where}: no credentials in the URL`);
      const user = users.find((u) => u.user === env.get('TESSERA_NATS_USER')?.value);
      assert.ok(user, `${where}: the NATS user ${env.get('TESSERA_NATS_USER')?.value} exists in the Helm values`);
      const ref = /^<< \$(\w+) >>$/.exec(String(user.password))?.[1];
      assert.ok(ref, 'the NATS password is a variable, not a value');
      const natsRef = natsValues.container.env[ref].valueFrom.secretKeyRef;
      const podRef = env.get('TESSERA_NATS_PASSWORD')?.valueFrom?.secretKeyRef;
      assert.deepEqual(podRef, natsRef, `${where}: the pods read the password the servers check`);
      assert.equal(podRef.name, secretTemplate.metadata.name, `${where}: the Secret template names that Secret`);
      assert.ok(podRef.key in (secretTemplate.stringData ?? secretTemplate.data), `${where}: the Secret template has key ${podRef.key}`);
    }
    assert.ok(!r.docs.some((d) => d.kind === 'Secret'), `${r.name}: no Secret is applied with the overlay`);
    assert.ok(!r.docs.some((d) => d.metadata?.namespace), `${r.name}: namespace-less (kubectl apply -k … -n NS)`);
  }
  // Secrets under deploy/: placeholders only.
  for (const f of yamlFiles(K8S)) {
    for (const d of readYaml(f)) {
      if (d.kind !== 'Secret') continue;
      for (const v of Object.values({ ...d.stringData, ...d.data }) as string[]) assert.match(v, /^REPLACE-ME/, `${path.relative(ROOT, f)}: Secret holds a placeholder only`);
    }
    const text = fs.readFileSync(f, 'utf8');
    for (const m of text.matchAll(/^\s*(?:-\s*)?(password|pass|token)\s*:\s*(.+)$/gim)) assert.match(m[2].trim(), /^(<< \$\w+ >>|REPLACE-ME\S*)$/, `${path.relative(ROOT, f)}: ${m[1]} has a literal value`);
  }
});

test('deploy: Dockerfile lint passes both images and flags bad Dockerfiles', () => {
  for (const d of DOCKERFILES) assert.deepEqual(lintDockerfile(d.text), [], d.file);
  const bad = [
    'FROM node:latest AS a',
    'FROM ubuntu',
    'FROM node:20-slim',
    'ARG NPM_TOKEN=abc123',
    'ENV DB_PASSWORD=hunter2 OTHER=1',
    'ENV AWS_SECRET s3cr3t',
    'RUN API_KEY=xyz npm ci',
    'USER root',
    'ENTRYPOINT node server.js',
  ].join('\n');
  const f = lintDockerfile(bad);
  for (const expect of [/node:latest: the latest tag/, /FROM ubuntu: no tag/, /node:20-slim: tag "20-slim" is not an exact/, /sets NPM_TOKEN/, /sets DB_PASSWORD/, /sets AWS_SECRET/, /sets API_KEY/, /runs as root/, /not in exec/]) {
    assert.ok(f.some((x) => expect.test(x)), `lint missed ${expect}: ${f.join(' | ')}`);
  }
  assert.ok(!f.some((x) => /OTHER/.test(x)));
  assert.ok(lintDockerfile('FROM node:20.20.2-slim\nENTRYPOINT ["node", "/app/bin/tessera.mjs"]').some((x) => /no USER/.test(x)));
  assert.ok(lintDockerfile('FROM node:20.20.2-slim\nUSER 0:0\nENTRYPOINT ["node", "/app/bin/tessera.mjs"]').some((x) => /runs as 0/.test(x)));
  // A USER in an earlier stage does not count for the final one; a stage alias is not an image.
  assert.ok(lintDockerfile('FROM node:20.20.2-slim AS b\nUSER 1000\nFROM b\nENTRYPOINT ["node", "/app/bin/tessera.mjs"]').some((x) => /no USER/.test(x)));
  assert.deepEqual(lintDockerfile('FROM --platform=linux/amd64 node:20.20.2-slim AS b\nFROM b\nARG TOKEN\nUSER 1000:1000\nENTRYPOINT ["node", "/app/bin/tessera.mjs"]'), []);
  // Both images: same entrypoint, and the GPU one installs the CUDA provider the way 1.30 reads it.
  const gpu = DOCKERFILES[1].text;
  assert.match(gpu, /ONNXRUNTIME_NODE_INSTALL=cuda12 node script\/install/);
  assert.match(gpu, /FROM (--platform=\S+ )?nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu22\.04/);
  const install = fs.readFileSync(path.join(ROOT, 'node_modules/onnxruntime-node/script/install-utils.js'), 'utf8');
  assert.match(install, /process\.env\.ONNXRUNTIME_NODE_INSTALL \|\|/, 'onnxruntime-node reads ONNXRUNTIME_NODE_INSTALL first');
  assert.match(fs.readFileSync(path.join(ROOT, 'node_modules/onnxruntime-node/script/install-metadata.js'), 'utf8'), /'linux\/x64': \['cuda12'\]/);
});

test('deploy: the images hold every module the CLI loads, and .dockerignore excludes none of them', () => {
  const ignoreText = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');
  const patterns = ignoreText.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  assert.ok(!patterns.some((p) => p.startsWith('!')), '.dockerignore negations are not understood by this check');
  for (const p of ['node_modules', 'bench-results', 'work', '.git']) assert.equal(ignored(p, patterns), p, `.dockerignore excludes ${p}`);
  const preset = loadConfig({ preset: 'synthetic-em' }).models;
  const needed = [
    ...moduleClosure(),
    'package.json', // read for run.json's versions (shared/run/session.ts)
    ...[preset.fullres, preset.lowres].flatMap((m) => [m, m.replace(/\.onnx$/, '.json')]).map((m) => path.relative(ROOT, m)),
  ];
  assert.ok(needed.includes('services/cli/main.ts') && needed.includes('shared/infer/thread-worker.ts'), 'the module walk reaches the CLI and the inference thread');
  assert.ok(!needed.some((f) => f.startsWith('bench/') || f.startsWith('test/')), 'no service module imports the benchmarks or test code');
  for (const d of DOCKERFILES) {
    const copies = copiedTo(d.text);
    for (const f of needed) {
      assert.equal(landsAt(f, copies), `/app/${f}`, `${d.file}: ${f} is not copied to /app/${f}`);
      assert.equal(ignored(f, patterns), undefined, `.dockerignore excludes ${f}`);
    }
    assert.ok(d.text.includes('COPY --from=deps /app/node_modules ./node_modules'), `${d.file}: node_modules from the deps stage`);
    // Negative: a file the image does not copy is reported as such.
    assert.equal(landsAt('docs/design.md', copies), undefined);
  }
  assert.equal(ignored('bench-results/x.json', patterns), 'bench-results');
  assert.equal(ignored('shared/foo/node_modules/x', patterns), '**/node_modules');
  assert.equal(ignored('shared/node_modules.ts', patterns), undefined);
});

test('deploy: docs/cluster.md: its tessera commands exist, its YAML validates, it names every metric', async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/cluster.md'), 'utf8');
  const { commands, flags } = await cli();
  let checked = 0;
  for (const block of doc.matchAll(/```(\w*)\n([\s\S]*?)```/g)) {
    const [, lang, body] = block;
    if (lang === 'yaml') {
      for (const d of parseYaml(body, 'docs/cluster.md')) {
        validateSchema(d, 'docs/cluster.md');
        for (const c of containersOf(d)) {
          const args = ((c.args ?? []) as unknown[]).map(String);
          assert.ok(commands.has(args[0]) && flags.has(args[0]), `docs/cluster.md: a YAML example runs "${args[0]}"`);
          for (const { flag } of flagsOf(args)) assert.ok(flags.get(args[0])!.has(flag), `docs/cluster.md: tessera ${args[0]} has no ${flag}`);
          checked++;
        }
      }
      continue;
    }
    if (lang !== 'sh') continue;
    const text = body.replace(/\\\n\s*/g, ' ');
    for (const raw of text.split('\n')) {
      // `-n tessera` is the namespace, not the command.
      const line = raw.replace(/(^|\s)(-n|--namespace|namespace)[\s=]+tessera(?=\s|$)/g, '$1');
      const m = /(?:^|\s)(?:npx tessera|tessera|node \/app\/bin\/tessera\.mjs)\s+([a-z][\w-]*)(?=\s|$)(.*)$/.exec(line);
      if (!m) continue;
      const [, sub, rest] = m;
      assert.ok(commands.has(sub), `docs/cluster.md: "tessera ${sub}" is not a command: ${line}`);
      if (!flags.has(sub)) continue;
      const words = rest.replace(/#.*$/, '').split(/\s+|\||&&|;/).filter(Boolean);
      for (const { flag } of flagsOf(words)) assert.ok(flags.get(sub)!.has(flag), `docs/cluster.md: tessera ${sub} has no ${flag}: ${line}`);
      checked++;
    }
  }
  assert.ok(checked >= 4, `docs/cluster.md: ${checked} tessera command lines checked`);
  const metrics = [...fs.readFileSync(path.join(ROOT, 'services/metrics.ts'), 'utf8').matchAll(/name: '(tessera_\w+)'/g)].map((m) => m[1]);
  assert.ok(metrics.length >= 5);
  for (const m of metrics) assert.ok(doc.includes(m), `docs/cluster.md names the metric ${m}`);
  assert.ok(doc.includes('docs/benchmark.md') || doc.includes('benchmark.md'), 'sizing cites the measured figures');
});
