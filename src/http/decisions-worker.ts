/**
 * The decision lookup's own thread: GET /v1/decisions served from an index that
 * the engines' thread keeps up to date with messages (see DecisionServer). Its
 * event loop waits for nothing else, so an answer never queues behind a batch's
 * JavaScript work (decoding, rule results) on the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { DecisionIndex, type DetectionRows } from '../alerts/decisions.js';
import type { List } from '../rules/lists.js';
import { decisionsListener } from './decisions.js';

/** What the main thread sends. */
export type DecisionMessage = { type: 'feed'; rows: DetectionRows } | { type: 'lists'; lists: List[] } | { type: 'clock'; us: number };

const { host, port } = workerData as { host: string; port: number };

/** This thread's id in the operating system (Linux), for the main thread to favour it; null elsewhere. */
function threadId(): number | null {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return null;
  }
}
let lists: List[] = [];
let clockUs = -Infinity;
const index = new DecisionIndex(
  () => lists,
  () => clockUs,
);
parentPort!.on('message', (m: DecisionMessage) => {
  if (m.type === 'feed') index.feed(m.rows);
  else if (m.type === 'lists') lists = m.lists;
  else clockUs = m.us;
});
const server = createServer(decisionsListener(index));
server.once('error', (err: NodeJS.ErrnoException) => parentPort!.postMessage({ type: 'failed', code: err.code ?? '', message: err.message }));
server.listen(port, host, () => {
  const a = server.address() as { address: string; port: number };
  const shown = a.address.includes(':') ? `[${a.address}]` : a.address;
  parentPort!.postMessage({ type: 'listening', url: `http://${shown}:${a.port}`, thread: threadId() });
});
