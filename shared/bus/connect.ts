// Connecting to NATS: servers, auth and TLS from flags or the environment, reconnecting for
// ever (a broker restart must not end a run), and a description for logs that never holds a
// secret.
//
//   TESSERA_NATS_URL         servers, comma-separated (nats://host:4222); user:password@ allowed
//   TESSERA_NATS_USER / TESSERA_NATS_PASSWORD     user/password auth
//   TESSERA_NATS_TOKEN       token auth
//   TESSERA_NATS_CREDS       a .creds file (JWT + nkey seed)
//   TESSERA_NATS_NKEY        a file holding an nkey seed
//   TESSERA_NATS_TLS_CA / TESSERA_NATS_TLS_CERT / TESSERA_NATS_TLS_KEY   TLS files (PEM)
import * as fs from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { type NatsConnection, type ConnectionOptions, credsAuthenticator, nkeyAuthenticator } from '@nats-io/nats-core';
import type { Logger } from '../log.ts';
import { ConfigError } from '../errors.ts';

export interface BusOptions {
  /** Server URLs, without credentials. */
  servers: string[];
  user?: string;
  password?: string;
  token?: string;
  /** Path of a .creds file. */
  creds?: string;
  /** Path of a file holding an nkey seed. */
  nkey?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  /** Connection name the server shows (service and host). */
  name: string;
}

/**
 * Options from a URL (`--nats`, else TESSERA_NATS_URL) and the environment. Credentials in the
 * URL (nats://user:pass@host) are moved out of it, so the servers list is safe to log.
 */
export function busOptions(url: string | undefined, name: string, env: NodeJS.ProcessEnv = process.env): BusOptions {
  const raw = url ?? env.TESSERA_NATS_URL;
  if (!raw) throw new ConfigError('nats', 'no server: pass --nats URL or set TESSERA_NATS_URL');
  let user = env.TESSERA_NATS_USER;
  let password = env.TESSERA_NATS_PASSWORD;
  const servers = raw.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    let u: URL;
    try {
      u = new URL(s.includes('://') ? s : `nats://${s}`);
    } catch {
      throw new ConfigError('nats', `"${s.replace(/\/\/[^@]*@/, '//***@')}" is not a server URL`);
    }
    if (u.username) {
      user = decodeURIComponent(u.username);
      password = decodeURIComponent(u.password);
      u.username = '';
      u.password = '';
    }
    return u.toString().replace(/\/$/, '');
  });
  if (!servers.length) throw new ConfigError('nats', 'no server URL given');
  const file = (key: string, v: string | undefined) => {
    if (v !== undefined && !fs.existsSync(v)) throw new ConfigError('nats', `${key}: file ${v} not found`);
    return v;
  };
  const tls = {
    ca: file('TESSERA_NATS_TLS_CA', env.TESSERA_NATS_TLS_CA),
    cert: file('TESSERA_NATS_TLS_CERT', env.TESSERA_NATS_TLS_CERT),
    key: file('TESSERA_NATS_TLS_KEY', env.TESSERA_NATS_TLS_KEY),
  };
  return {
    servers, user, password, token: env.TESSERA_NATS_TOKEN,
    creds: file('TESSERA_NATS_CREDS', env.TESSERA_NATS_CREDS), nkey: file('TESSERA_NATS_NKEY', env.TESSERA_NATS_NKEY),
    tls: tls.ca || tls.cert || tls.key ? tls : undefined,
    name,
  };
}

/** For logs: servers and which auth is used, never a secret. */
export function describeBus(o: BusOptions): Record<string, unknown> {
  const auth = o.creds ? 'creds' : o.nkey ? 'nkey' : o.token ? 'token' : o.user ? `user ${o.user}` : 'none';
  return { servers: o.servers, auth, tls: !!o.tls };
}

export async function connectBus(o: BusOptions, log: Logger): Promise<NatsConnection> {
  const opts: ConnectionOptions = {
    servers: o.servers,
    name: o.name,
    // A broker restart or a network blip must not end a run: keep reconnecting.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // But the first connection fails at once: a wrong URL is an error to report, not to wait on.
    waitOnFirstConnect: false,
  };
  if (o.user !== undefined) {
    opts.user = o.user;
    opts.pass = o.password ?? '';
  }
  if (o.token !== undefined) opts.token = o.token;
  if (o.creds) opts.authenticator = credsAuthenticator(new Uint8Array(fs.readFileSync(o.creds)));
  else if (o.nkey) opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(fs.readFileSync(o.nkey, 'utf8').trim()));
  if (o.tls) opts.tls = { caFile: o.tls.ca, certFile: o.tls.cert, keyFile: o.tls.key };
  let nc: NatsConnection;
  try {
    nc = await connect(opts);
  } catch (err) {
    throw new ConfigError('nats', `cannot connect to ${o.servers.join(', ')}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ nats: describeBus(o) }, 'connected to NATS');
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') log.warn({ nats: s.type, server: (s as { server?: string }).server }, `NATS ${s.type}`);
    }
  })().catch(() => undefined);
  return nc;
}
