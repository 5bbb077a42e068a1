// `tessera view OUTPUT`: serve an output over HTTP (CORS, byte ranges) and print a neuroglancer
// link with the image, segmentation, instances and boxes layers. Runs until interrupted.
import type { Command } from 'commander';
import { intArg } from './flags.ts';

export function viewCommand(program: Command): void {
  program.command('view <output>')
    .description('serve an output (and its input) on localhost for neuroglancer and print the link; writes the boxes annotation layer first')
    .option('--input <vol.zarr>', 'the input image (NGFF group) to show beneath the segmentation: a path (served here) or a URL neuroglancer reads itself (https://, gs://, public s3://)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', intArg, 8080)
    .option('--neuroglancer <url>', 'the neuroglancer client the link opens: a self-hosted one on a cluster with no way out (default: $TESSERA_NEUROGLANCER, else the public demo client)')
    .action(async (output: string, o: { input?: string; host: string; port: number; neuroglancer?: string }) => {
      const { openView } = await import('../../shared/view/serve.ts');
      const v = await openView({ output, input: o.input, host: o.host, port: o.port, neuroglancer: o.neuroglancer ?? process.env.TESSERA_NEUROGLANCER });
      process.stdout.write(`serving ${output} at ${v.url}/output${o.input ? ` and ${o.input} at ${v.url}/input` : ''}${v.boxes !== undefined ? ` (${v.boxes} boxes as annotations)` : ''}\n`);
      process.stdout.write(`neuroglancer: ${v.link}\n`);
      process.stdout.write(`napari: napari --plugin napari-ome-zarr ${output}/segmentation\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await v.close();
    });
}
