// The two test servers ship no types; what the helpers use of them.
declare module 'serve-handler' {
  import type { IncomingMessage, ServerResponse } from 'node:http';
  export default function handler(req: IncomingMessage, res: ServerResponse, config?: Record<string, unknown>): Promise<void>;
}
declare module 's3rver' {
  export default class S3rver {
    constructor(options: Record<string, unknown>);
    run(): Promise<unknown>;
    close(): Promise<void>;
  }
}
