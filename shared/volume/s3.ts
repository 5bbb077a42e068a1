// The S3 REST API as an input reads it: Signature Version 4 (written on node:crypto — a GET
// needs one HMAC chain and one SHA-256, not an SDK of hundreds of modules), and credentials
// from the standard AWS chain: environment, shared credentials file, web identity (a
// Kubernetes service account's projected token exchanged at STS), else anonymous.
// Secrets never reach a message: errors name the source (a variable, a file, a role ARN).
import { createHash, createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InputError } from '../errors.ts';

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  /** Epoch ms after which they no longer work (web identity); absent: they do not expire. */
  readonly expires?: number;
}

/** Where the credentials came from, for messages (never the secret itself). */
export type CredentialSource = 'environment' | 'profile' | 'web-identity' | 'anonymous';

export interface SignInput {
  method: string;
  url: URL;
  /** Headers to send and sign (lower-case names); `host` and the x-amz-* ones are added. */
  headers: Record<string, string>;
  region: string;
  service: string;
  /** SHA-256 hex of the body, or UNSIGNED-PAYLOAD. @default the empty body's hash */
  payloadHash?: string;
  /** Send (and sign) x-amz-content-sha256, which S3 requires and other services do not. @default true */
  contentHashHeader?: boolean;
  now: Date;
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256 = (data: string) => createHash('sha256').update(data, 'utf8').digest('hex');

/** RFC 3986 encoding of one path segment or query value, as SigV4 wants it. */
function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** `20130524T000000Z`: the x-amz-date form of a time. */
export function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/**
 * Sign a request with SigV4: returns the headers to send (the given ones, plus host,
 * x-amz-date, x-amz-content-sha256, x-amz-security-token when there is a session, and
 * authorization). S3 canonical paths are the URL's path as sent (not encoded twice).
 */
export function signV4(req: SignInput, cred: Credentials): Record<string, string> {
  const date = amzDate(req.now);
  const payload = req.payloadHash ?? EMPTY_SHA256;
  const headers: Record<string, string> = { ...req.headers, host: req.url.host, 'x-amz-date': date };
  if (req.contentHashHeader !== false) headers['x-amz-content-sha256'] = payload;
  if (cred.sessionToken) headers['x-amz-security-token'] = cred.sessionToken;
  const names = Object.keys(headers).map((k) => k.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const canonicalHeaders = names.map((n) => `${n}:${String(lower[n]).trim().replace(/\s+/g, ' ')}\n`).join('');
  const query = [...req.url.searchParams.entries()]
    .map(([k, v]) => [encodeRfc3986(k), encodeRfc3986(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`).join('&');
  const canonical = [req.method, req.url.pathname || '/', query, canonicalHeaders, names.join(';'), payload].join('\n');
  const day = date.slice(0, 8);
  const scope = `${day}/${req.region}/${req.service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${cred.secretAccessKey}`, day), req.region), req.service), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${cred.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return headers;
}

// ---------------------------------------------------------------- credentials

type Env = Record<string, string | undefined>;

/** `[section]` → key → value of an INI file (the shared credentials file's format). */
export function parseIni(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let section: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (head) {
      section = new Map();
      out.set(head[1], section);
      continue;
    }
    const eq = line.indexOf('=');
    if (section && eq > 0) section.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

function fromEnvironment(env: Env): Credentials | undefined {
  if (!env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) return undefined;
  return { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
}

/** The profile's keys in the shared credentials file; an InputError if a named profile is absent. */
function fromProfile(env: Env, home: string): Credentials | undefined {
  const file = env.AWS_SHARED_CREDENTIALS_FILE ?? path.join(home, '.aws', 'credentials');
  const name = env.AWS_PROFILE ?? 'default';
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    if (env.AWS_PROFILE) throw new InputError(file, `AWS_PROFILE is "${name}" but the shared credentials file cannot be read`);
    return undefined;
  }
  const p = parseIni(text).get(name);
  const id = p?.get('aws_access_key_id');
  const secret = p?.get('aws_secret_access_key');
  if (!id || !secret) {
    if (env.AWS_PROFILE) throw new InputError(file, `profile "${name}" (AWS_PROFILE) has no aws_access_key_id and aws_secret_access_key`);
    return undefined;
  }
  const token = p?.get('aws_session_token');
  return { accessKeyId: id, secretAccessKey: secret, ...(token ? { sessionToken: token } : {}) };
}

export interface WebIdentityRequest {
  url: string;
  body: string;
}

/** The STS AssumeRoleWithWebIdentity call for a role and a token (a form POST, not signed). */
export function webIdentityRequest(env: Env, token: string, region: string | undefined): WebIdentityRequest {
  const endpoint = env.AWS_ENDPOINT_URL_STS ?? env.AWS_ENDPOINT_URL ?? (region ? `https://sts.${region}.amazonaws.com` : 'https://sts.amazonaws.com');
  const body = new URLSearchParams({
    Action: 'AssumeRoleWithWebIdentity',
    Version: '2011-06-15',
    RoleArn: env.AWS_ROLE_ARN ?? '',
    RoleSessionName: env.AWS_ROLE_SESSION_NAME ?? `tessera-${process.pid}`,
    WebIdentityToken: token,
  });
  return { url: endpoint.replace(/\/?$/, '/'), body: body.toString() };
}

const tag = (xml: string, name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];

/** Exchange the service account's token for temporary credentials at STS. */
async function fromWebIdentity(env: Env, region: string | undefined, fetchFn: typeof fetch): Promise<Credentials> {
  const file = env.AWS_WEB_IDENTITY_TOKEN_FILE!;
  const role = env.AWS_ROLE_ARN!;
  let token: string;
  try {
    token = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new InputError(file, `AWS_WEB_IDENTITY_TOKEN_FILE cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const req = webIdentityRequest(env, token, region);
  let xml: string;
  let status: number;
  try {
    const res = await fetchFn(req.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/xml' }, body: req.body, signal: AbortSignal.timeout(30_000) });
    status = res.status;
    xml = await res.text();
  } catch (err) {
    throw new InputError(req.url, `STS AssumeRoleWithWebIdentity for ${role} failed: ${(err as Error).message}`);
  }
  const id = tag(xml, 'AccessKeyId');
  const secret = tag(xml, 'SecretAccessKey');
  if (status !== 200 || !id || !secret) {
    throw new InputError(req.url, `STS AssumeRoleWithWebIdentity for ${role} refused (HTTP ${status}${tag(xml, 'Code') ? ` ${tag(xml, 'Code')}` : ''}); check the role's trust policy and the service account`);
  }
  const exp = tag(xml, 'Expiration');
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: tag(xml, 'SessionToken'), ...(exp ? { expires: Date.parse(exp) } : {}) };
}

export interface CredentialProvider {
  readonly source: CredentialSource;
  /** Current credentials (refreshed before they expire); undefined when anonymous. */
  get(): Promise<Credentials | undefined>;
}

/**
 * The first source of the chain that has credentials: environment, then the shared profile,
 * then web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, as EKS's pod identity webhook
 * sets), else anonymous requests (public buckets).
 */
export function credentialChain(env: Env = process.env, o: { fetch?: typeof fetch; home?: string; region?: string } = {}): CredentialProvider {
  const fixed = fromEnvironment(env);
  if (fixed) return { source: 'environment', get: async () => fixed };
  const profile = fromProfile(env, o.home ?? os.homedir());
  if (profile) return { source: 'profile', get: async () => profile };
  if (env.AWS_WEB_IDENTITY_TOKEN_FILE && env.AWS_ROLE_ARN) {
    let current: Promise<Credentials> | undefined;
    let held: Credentials | undefined;
    const fetchFn = o.fetch ?? fetch;
    return {
      source: 'web-identity',
      get: async () => {
        // Renew five minutes before expiry (STS hands out one hour by default).
        if (!current || (held?.expires !== undefined && held.expires - Date.now() < 300_000)) {
          current = fromWebIdentity(env, o.region, fetchFn).then((c) => (held = c), (err) => { current = undefined; throw err; });
        }
        return current;
      },
    };
  }
  return { source: 'anonymous', get: async () => undefined };
}
