// The remote bench's servers, in a process of their own so that serving does not share the
// reading worker's CPU time: serve-handler over DIR and s3rver (objects under S3DIR, put there by
// the bench). Prints one JSON line {http, s3} once both listen; stops on SIGTERM.
//   node --import tsx bench/remote-servers.ts DIR S3DIR
import { startHttp, startS3 } from '../test/helpers/remote.ts';

const [dir, s3dir] = process.argv.slice(2);
const http = await startHttp(dir);
const s3 = await startS3(s3dir);
process.stdout.write(`${JSON.stringify({ http: http.url, s3: s3.url })}\n`);
process.once('SIGTERM', () => void Promise.all([http.close(), s3.close()]).then(() => process.exit(0)));
