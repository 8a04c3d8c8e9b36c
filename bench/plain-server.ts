/**
 * The bench's control for the decision lookup: a plain HTTP server on a worker
 * thread of its own (as fraud-sql's lookup is) that answers every GET with the
 * same small JSON, with no lookup behind it. Its latency while fraud-sql processes
 * orders is what this machine gives any answer under that load.
 * Usage (by the bench): fork plain-server.js; it sends its URL.
 */
import http from 'node:http';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

if (isMainThread) {
  const worker = new Worker(new URL(import.meta.url));
  worker.on('message', (url: string) => process.send!(url));
  process.on('disconnect', () => process.exit(0));
} else {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"decisions":[]}');
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    parentPort!.postMessage(`http://127.0.0.1:${port}`);
  });
}
