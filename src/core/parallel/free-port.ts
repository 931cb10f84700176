import { createServer } from 'node:net';

/** A TCP port free on this host now (the OS picks it); single-node jobs use one so two jobs never collide on 29500. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
