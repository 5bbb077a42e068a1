// A tiny schema language for the config: every key has a type, an optional range or enum, and
// a documentation line. One walker validates any object against it and names the dotted key of
// the first problem. (A hand-written walker keeps dependencies at zero and messages exact.)
import { ConfigError } from '../errors.ts';

export type Field =
  | { type: 'number'; min?: number; max?: number; int?: boolean; doc: string }
  | { type: 'string'; doc: string }
  | { type: 'boolean'; doc: string }
  | { type: 'enum'; values: readonly string[]; doc: string }
  | { type: 'vec3'; min?: number; int?: boolean; doc: string }
  | { type: 'object'; fields: Record<string, Field>; doc: string }
  | { type: 'optional'; of: Field; doc: string }
  /** One of several shapes (a path, or an object with the path and more); `expect` says them in words. */
  | { type: 'either'; of: readonly Field[]; expect: string; doc: string };

function check(f: Field, v: unknown, key: string): void {
  switch (f.type) {
    case 'optional':
      if (v !== undefined && v !== null) check(f.of, v, key);
      return;
    case 'either': {
      const errs: ConfigError[] = [];
      for (const f1 of f.of) {
        try {
          check(f1, v, key);
          return;
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          errs.push(err);
        }
      }
      // An object that is one of the shapes but wrong inside: say what is wrong in it.
      const inner = typeof v === 'object' && v !== null && !Array.isArray(v) ? errs.find((e, i) => f.of[i].type === 'object') : undefined;
      if (inner) throw inner;
      throw new ConfigError(key, `expected ${f.expect}, got ${JSON.stringify(v)}`);
    }
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(key, `expected a number, got ${JSON.stringify(v)}`);
      if (f.int && !Number.isInteger(v)) throw new ConfigError(key, `expected an integer, got ${v}`);
      if (f.min !== undefined && v < f.min) throw new ConfigError(key, `must be ≥ ${f.min}, got ${v}`);
      if (f.max !== undefined && v > f.max) throw new ConfigError(key, `must be ≤ ${f.max}, got ${v}`);
      return;
    case 'string':
      if (typeof v !== 'string' || v.length === 0) throw new ConfigError(key, `expected a non-empty string, got ${JSON.stringify(v)}`);
      return;
    case 'boolean':
      if (typeof v !== 'boolean') throw new ConfigError(key, `expected true or false, got ${JSON.stringify(v)}`);
      return;
    case 'enum':
      if (typeof v !== 'string' || !f.values.includes(v)) {
        throw new ConfigError(key, `expected one of ${f.values.map((x) => `"${x}"`).join(', ')}, got ${JSON.stringify(v)}`);
      }
      return;
    case 'vec3':
      if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
        throw new ConfigError(key, `expected three numbers [z, y, x], got ${JSON.stringify(v)}`);
      }
      if (f.int && !v.every(Number.isInteger)) throw new ConfigError(key, `expected integers, got ${JSON.stringify(v)}`);
      if (f.min !== undefined && !v.every((x: number) => x >= f.min!)) throw new ConfigError(key, `every entry must be ≥ ${f.min}, got ${JSON.stringify(v)}`);
      return;
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(key, `expected an object, got ${JSON.stringify(v)}`);
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        if (!Object.prototype.hasOwnProperty.call(f.fields, k)) {
          const norm = (x: string) => x.replace(/[_-]/g, '').toLowerCase();
          const near = Object.keys(f.fields).find((c) => norm(c) === norm(k));
          throw new ConfigError(key ? `${key}.${k}` : k, `unknown key${near ? ` (did you mean "${near}"?)` : ''}`);
        }
      }
      for (const [k, sub] of Object.entries(f.fields)) {
        const kk = key ? `${key}.${k}` : k;
        if (o[k] === undefined && sub.type !== 'optional') throw new ConfigError(kk, 'missing');
        check(sub, o[k], kk);
      }
      return;
    }
  }
}

export function validate(schema: Field, value: unknown): void {
  check(schema, value, '');
}

/** Deep merge of plain objects; arrays and scalars in `over` replace those in `base`. */
export function deepMerge<T>(base: T, over: unknown): T {
  if (over === undefined) return base;
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof over !== 'object' || over === null || Array.isArray(over)) {
    return over as T;
  }
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = deepMerge(out[k], v);
  return out as T;
}

/** Markdown reference of every key (for docs/config.md, generated and tested to be current). */
export function describe(f: Field, key = ''): string[] {
  if (f.type === 'object') {
    const lines = key ? [`| \`${key}\` | object | ${f.doc} |`] : [];
    for (const [k, sub] of Object.entries(f.fields)) lines.push(...describe(sub, key ? `${key}.${k}` : k));
    return lines;
  }
  const t = f.type === 'optional' ? f.of : f;
  const type = t.type === 'enum' ? t.values.map((v) => `\`${v}\``).join(' \\| ') : t.type === 'either' ? t.of.map((x) => x.type).join(' \\| ') : t.type;
  const obj = t.type === 'object' ? t : t.type === 'either' ? t.of.find((x) => x.type === 'object') : undefined;
  const inner = obj ? describe(obj, key).slice(1) : [];
  return [`| \`${key}\` | ${type}${f.type === 'optional' ? ' (optional)' : ''} | ${f.doc} |`, ...inner];
}
