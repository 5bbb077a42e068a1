// Inputs by URL: `https://` and `http://` (GET, with Range for shard indexes and inner chunks),
// `s3://bucket/prefix` (the S3 REST API, SigV4, endpoint override for MinIO/Ceph/GCS interop)
// and `gs://bucket/…` (a public GCS bucket over HTTPS). One RemoteClient per opened input bounds
// the requests in flight, retries what may pass (5xx, 429, 503 SlowDown, timeouts, resets) with
// jittered backoff, and counts requests and bytes (the bench's read amplification). A 404 on a
// chunk is a missing chunk (io.missingChunks decides); 401/403 and a missing bucket are one-line
// InputErrors naming the URL, never a credential.
import pLimit from 'p-limit';
import type * as zarr from 'zarrita';
import { InputError, RemoteError } from '../errors.ts';
import { jittered, sleep } from '../bus/backoff.ts';
import { Lru } from '../cache.ts';
import { type CredentialProvider, credentialChain, signV4 } from './s3.ts';

const SCHEME = /^(https?|s3|gs):\/\//i;

/** Is `input` a URL Tessera reads over the network (not a path)? */
export function isRemote(input: string): boolean {
  return SCHEME.test(input);
}

export interface RemoteSettings {
  /** Requests in flight per client (per opened input, so per process). */
  requests: number;
  /** Seconds one request (headers and body) may take before it is abandoned and retried. */
  timeout: number;
  /** Tries per request before a RemoteError (1: no retry). */
  tries: number;
  /** S3 endpoint (MinIO, Ceph, GCS interop); path-style addressing when set. */
  s3Endpoint?: string;
  s3Region?: string;
}

export const DEFAULT_REMOTE: RemoteSettings = { requests: 64, timeout: 30, tries: 6 };

/**
 * A URL as messages and the run identity show it: no user info, no query (a presigned or SAS
 * query is a credential), no trailing slash; gs:// and s3:// as given.
 */
export function displayUrl(input: string): string {
  const u = new URL(input);
  return `${u.protocol}//${u.host}${u.pathname}`.replace(/\/+$/, '');
}

/** `url` + `/sub` (a dataset of a group, a key of an array), keeping the query. */
export function remoteJoin(url: string, sub: string): string {
  const u = new URL(url);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/${sub.replace(/^\/+/, '')}`;
  return u.toString();
}

/** The URL one level up (`…/vol.zarr/1` → `…/vol.zarr`); undefined at a bucket or host root. */
export function remoteParent(url: string): string | undefined {
  const u = new URL(url);
  const parts = u.pathname.replace(/\/+$/, '').split('/');
  if (parts.length <= 1 || (parts.length === 2 && parts[1] === '')) return undefined;
  u.pathname = parts.slice(0, -1).join('/') || '/';
  return u.toString();
}

/** Check a URL's form before any request: an InputError naming what is wrong. */
export function checkRemoteUrl(input: string): void {
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    throw new InputError(input, 'is not a valid URL');
  }
  if (u.username || u.password) throw new InputError(displayUrl(input), 'credentials in the URL are not accepted (they would end up in logs and run.json); for s3:// use the AWS credential chain');
  if ((u.protocol === 's3:' || u.protocol === 'gs:') && !u.host) throw new InputError(input, `expected ${u.protocol}//BUCKET/PREFIX`);
}

type Env = Record<string, string | undefined>;

export interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The S3 error code of an error reply (NoSuchKey, NoSuchBucket, SlowDown, AccessDenied…). */
  code?: string;
}

export interface RemoteStats {
  requests: number;
  /** Response body bytes received (read amplification's numerator). */
  bytes: number;
  retries: number;
}

const RETRY_CODES = new Set(['SlowDown', 'RequestTimeout', 'InternalError', 'ServiceUnavailable', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded']);

/** Is this reply worth another try (server errors, throttling)? 4xx other than 429 are not. */
export function retryableStatus(status: number, code?: string): boolean {
  return status === 429 || status >= 500 || (code !== undefined && RETRY_CODES.has(code));
}

/** Is this fetch failure worth another try (timeout, reset, refused, DNS blip), not a stop? */
export function retryableFailure(err: unknown, stopping: AbortSignal | undefined): boolean {
  if (stopping?.aborted) return false;
  const e = err as { name?: string };
  return e?.name === 'TimeoutError' || e?.name === 'AbortError' || err instanceof TypeError || (err as NodeJS.ErrnoException)?.code !== undefined;
}

function describeFailure(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'timed out';
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** The bucket and key prefix of an s3:// URL. */
function s3Parts(u: URL): { bucket: string; prefix: string } {
  return { bucket: u.host, prefix: decodeURIComponent(u.pathname.replace(/^\/+|\/+$/g, '')) };
}

const encodeKey = (k: string) => k.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');

export class RemoteClient {
  readonly stats: RemoteStats = { requests: 0, bytes: 0, retries: 0 };
  readonly settings: RemoteSettings;
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly env: Env;
  private readonly fetchFn: typeof fetch;
  private creds?: CredentialProvider;

  constructor(settings: Partial<RemoteSettings> = {}, o: { env?: Env; fetch?: typeof fetch } = {}) {
    this.settings = { ...DEFAULT_REMOTE, ...settings };
    this.limit = pLimit(this.settings.requests);
    this.env = o.env ?? process.env;
    this.fetchFn = o.fetch ?? fetch;
  }

  get region(): string {
    return this.settings.s3Region ?? this.env.AWS_REGION ?? this.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  }

  /** Where credentials for s3:// come from (for messages). */
  credentialSource(): string {
    return this.credentials().source;
  }

  private credentials(): CredentialProvider {
    this.creds ??= credentialChain(this.env, { fetch: this.fetchFn, region: this.region });
    return this.creds;
  }

  /** The HTTP URL of `key` under `base` (s3:// mapped to its endpoint, gs:// to storage.googleapis.com). */
  httpUrl(base: string, key: string): URL {
    const u = new URL(base);
    if (u.protocol === 'gs:') return new URL(remoteJoin(`https://storage.googleapis.com/${u.host}${u.pathname}`, key));
    if (u.protocol !== 's3:') return new URL(remoteJoin(base, key));
    const { bucket, prefix } = s3Parts(u);
    const object = encodeKey([prefix, key.replace(/^\/+/, '')].filter(Boolean).join('/'));
    const endpoint = this.settings.s3Endpoint ?? this.env.AWS_ENDPOINT_URL_S3 ?? this.env.AWS_ENDPOINT_URL;
    // An endpoint (MinIO, Ceph, GCS interop) takes path-style addresses; AWS virtual-hosted
    // ones, except for bucket names with dots (their TLS certificate would not match).
    if (endpoint) return new URL(`${endpoint.replace(/\/+$/, '')}/${bucket}/${object}`);
    if (bucket.includes('.')) return new URL(`https://s3.${this.region}.amazonaws.com/${bucket}/${object}`);
    return new URL(`https://${bucket}.s3.${this.region}.amazonaws.com/${object}`);
  }

  /**
   * One request with retries: a reply that is final (2xx, 3xx, 4xx but 429) is returned, the
   * rest are tried again after a jittered backoff; after `tries` a RemoteError names the URL
   * and the key with the last cause.
   */
  async request(base: string, key: string, o: { method?: 'GET' | 'HEAD'; range?: string; signal?: AbortSignal } = {}): Promise<Reply> {
    const where = `${displayUrl(base)}/${key.replace(/^\/+/, '')}`;
    for (let attempt = 1; ; attempt++) {
      let cause: string;
      try {
        const reply = await this.limit(() => this.once(base, key, o));
        if (!retryableStatus(reply.status, reply.code)) return reply;
        cause = `HTTP ${reply.status}${reply.code ? ` ${reply.code}` : ''}`;
      } catch (err) {
        if (err instanceof InputError || !retryableFailure(err, o.signal)) throw err;
        cause = describeFailure(err);
      }
      if (attempt >= this.settings.tries) throw new RemoteError(where, `gave up after ${attempt} tries (last: ${cause})`);
      this.stats.retries++;
      await sleep(jittered(attempt - 1, 10_000), o.signal);
      if (o.signal?.aborted) throw o.signal.reason;
    }
  }

  private async once(base: string, key: string, o: { method?: 'GET' | 'HEAD'; range?: string; signal?: AbortSignal }): Promise<Reply> {
    const url = this.httpUrl(base, key);
    const method = o.method ?? 'GET';
    let headers: Record<string, string> = o.range ? { range: o.range } : {};
    if (base.startsWith('s3:')) {
      const cred = await this.credentials().get();
      if (cred) headers = signV4({ method, url, headers, region: this.region, service: 's3', payloadHash: 'UNSIGNED-PAYLOAD', now: new Date() }, cred);
    }
    // Byte ranges address the object as stored: no transfer compression (unsigned, so a proxy
    // that rewrites it does not break the signature).
    headers = { ...headers, 'accept-encoding': 'identity' };
    const timeout = AbortSignal.timeout(this.settings.timeout * 1000);
    const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
    this.stats.requests++;
    // The body is read under the same timeout: a reply that stalls mid-body is retried too.
    const res = await this.fetchFn(url, { method, headers, signal });
    const body = method === 'HEAD' ? new Uint8Array(0) : new Uint8Array(await res.arrayBuffer());
    this.stats.bytes += body.length;
    const reply: Reply = { status: res.status, headers: res.headers, body };
    if (res.status >= 300 && body.length > 0 && body[0] === 0x3c /* < */) {
      const code = /<Code>([^<]*)<\/Code>/.exec(new TextDecoder().decode(body.subarray(0, 4096)))?.[1];
      if (code) reply.code = code;
    }
    return reply;
  }
}

const METADATA = new Set(['.zarray', '.zattrs', '.zgroup', '.zmetadata', 'zarr.json']);
const isMetadata = (key: string) => METADATA.has(key.slice(key.lastIndexOf('/') + 1));

type Key = `/${string}`;

/**
 * A read-only zarrita store at a URL. Metadata documents are kept once read (a few per array);
 * shard indexes (suffix reads) in an LRU bounded in bytes, so the fresh zarrita Array that
 * readRegion builds per read (uncachedArray) does not fetch each index again. `onMissing` is
 * called for a chunk or shard that is not there (404), as AtomicFileStore does for a missing file.
 */
export class RemoteStore implements zarr.AsyncReadable {
  readonly url: string;
  readonly client: RemoteClient;
  private readonly onMissing?: (key: string) => void;
  private readonly meta = new Map<string, Promise<Uint8Array | undefined>>();
  /** Shard indexes by bytes (16 MiB: 16 k shards of 64 inner chunks, 256 of FAFB-size 4096). */
  private readonly indexes = new Lru<Uint8Array | undefined>(16 * 2 ** 20);
  /** False once the server answered a suffix range wrongly: HEAD + range from then on. */
  private suffixOk = true;

  constructor(url: string, client: RemoteClient, onMissing?: (key: string) => void) {
    this.url = url;
    this.client = client;
    this.onMissing = onMissing;
  }

  get(key: Key, opts?: { signal?: AbortSignal }): Promise<Uint8Array | undefined> {
    if (!isMetadata(key)) return this.fetch(key, undefined, opts?.signal);
    let p = this.meta.get(key);
    if (!p) {
      p = this.fetch(key, undefined, opts?.signal);
      p.catch(() => this.meta.delete(key));
      this.meta.set(key, p);
    }
    return p;
  }

  async getRange(key: Key, range: zarr.RangeQuery, opts?: { signal?: AbortSignal }): Promise<Uint8Array | undefined> {
    if ('suffixLength' in range) return this.indexes.get(`${key}\0${range.suffixLength}`, () => this.suffix(key, range.suffixLength, opts?.signal), (v) => 64 + (v?.length ?? 0));
    return this.fetch(key, { offset: range.offset, length: range.length }, opts?.signal);
  }

  private where(key: string): string {
    return `${displayUrl(this.url)}/${key.replace(/^\/+/, '')}`;
  }

  /**
   * Whether an object is stored at `key` (a HEAD): the missing-input skip asks this of a task's
   * storage chunks, as it asks the file system of a local input. 403 and the like throw as a read does.
   */
  async has(key: Key, signal?: AbortSignal): Promise<boolean> {
    const r = await this.client.request(this.url, key, { method: 'HEAD', signal });
    if (r.status === 200 || r.status === 206) return true;
    if (r.status === 404 && r.code !== 'NoSuchBucket') return false;
    return this.refuse(key, r) !== undefined;
  }

  /** A final reply that is not a success: undefined for a missing object, else an InputError. */
  private refuse(key: string, r: Reply): undefined {
    if (r.status === 404 && r.code !== 'NoSuchBucket') {
      if (!isMetadata(key)) this.onMissing?.(key);
      return undefined;
    }
    const root = displayUrl(this.url);
    if (r.code === 'NoSuchBucket') throw new InputError(root, `bucket "${new URL(this.url).host}" does not exist (NoSuchBucket)`);
    const region = r.headers.get('x-amz-bucket-region');
    if (region && region !== this.client.region && this.url.startsWith('s3:')) {
      throw new InputError(root, `the bucket is in region ${region}, requests were signed for ${this.client.region}: set AWS_REGION (or io.s3.region) to ${region}`);
    }
    if (r.status === 401 || r.status === 403) {
      const creds = this.url.startsWith('s3:') ? ` with credentials from ${this.client.credentialSource()}` : '';
      throw new InputError(root, `access denied reading ${key.replace(/^\/+/, '')}${creds} (HTTP ${r.status}${r.code ? ` ${r.code}` : ''}); check the credentials and the bucket policy`);
    }
    throw new InputError(this.where(key), `unexpected HTTP ${r.status}${r.code ? ` ${r.code}` : ''}`);
  }

  private async fetch(key: string, range: { offset: number; length: number } | undefined, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const r = await this.client.request(this.url, key, { range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined, signal });
    // A server that ignores Range sends the whole object: the part asked for is cut from it.
    const got = r.status === 200 && range ? r.body.subarray(range.offset, range.offset + range.length) : r.body;
    if (r.status === 200 || r.status === 206) {
      if (range && got.length !== range.length) throw new InputError(this.where(key), `asked for ${range.length} bytes at ${range.offset}, got ${got.length}`);
      return got;
    }
    return this.refuse(key, r);
  }

  /**
   * The last `n` bytes (a shard index). A suffix range (`bytes=-n`) where the server honours it;
   * a server that ignores or misreads it (s3rver reads `-n` as `0-n`) is answered from the
   * Content-Range total or a HEAD, then a plain range.
   */
  private async suffix(key: string, n: number, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    if (this.suffixOk) {
      const r = await this.client.request(this.url, key, { range: `bytes=-${n}`, signal });
      if (r.status === 200) return r.body.subarray(Math.max(0, r.body.length - n));
      if (r.status === 206) {
        const m = /bytes (\d+)-(\d+)\/(\d+)/.exec(r.headers.get('content-range') ?? '');
        const total = m ? Number(m[3]) : undefined;
        if (m && Number(m[1]) === Math.max(0, total! - n) && Number(m[2]) === total! - 1) return r.body;
        this.suffixOk = false;
        if (total !== undefined) return this.fetch(key, { offset: Math.max(0, total - n), length: Math.min(n, total) }, signal);
      } else if (r.status !== 416 && r.status !== 501 && !(r.status === 400 && r.code === 'InvalidRange')) {
        return this.refuse(key, r);
      } else this.suffixOk = false;
    }
    const head = await this.client.request(this.url, key, { method: 'HEAD', signal });
    if (head.status !== 200) return this.refuse(key, head);
    const total = Number(head.headers.get('content-length'));
    if (!Number.isFinite(total)) throw new InputError(this.where(key), 'the server gives no Content-Length, so the shard index at its end cannot be found');
    return this.fetch(key, { offset: Math.max(0, total - n), length: Math.min(n, total) }, signal);
  }
}
