/**
 * The bench's checkout service: asks GET /v1/decisions at a fixed rate from a
 * process of its own (forked by the bench), as a checkout is. On the bench's
 * main thread, the producer's work (generating, sending) would delay reading
 * answers and count as the lookup's latency; a worker thread measured slower than
 * a process's main thread here. Plain node:http with kept-alive connections:
 * fetch() adds milliseconds of its own at the tail on this machine.
 * Usage (by the bench): fork lookups.js <url> <rate>.
 */
import http from 'node:http';

/** From the bench: the IPs to ask about (in turn), and when to stop. */
export type LookupMessage = { type: 'ips'; ips: string[] } | { type: 'stop' };

const [url, rate] = [process.argv[2]!, Number(process.argv[3])];
const { hostname, port } = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const latencies: number[] = [];
const pending: Promise<void>[] = [];
let ips: string[] = [];
let failure: string | null = null;

const ask = (ip: string) =>
  new Promise<void>((resolve) => {
    const t0 = performance.now();
    http
      .get({ host: hostname, port: Number(port), path: `/v1/decisions?ip_address=${encodeURIComponent(ip)}`, agent }, (res) => {
        if (res.statusCode !== 200) failure ??= `/v1/decisions answered ${res.statusCode}`;
        res.resume();
        res.on('end', () => {
          latencies.push(performance.now() - t0);
          resolve();
        });
      })
      .on('error', (err) => {
        failure ??= err.message;
        resolve();
      });
  });

const started = Date.now();
let asked = 0;
const timer = setInterval(() => {
  const due = Math.floor(((Date.now() - started) / 1000) * rate);
  for (; asked < due && ips.length > 0; asked++) pending.push(ask(ips[asked % ips.length]!));
}, 1);

process.on('message', (m: LookupMessage) => {
  if (m.type === 'ips') ips = m.ips;
  else {
    clearInterval(timer);
    void Promise.all(pending).then(() => {
      agent.destroy();
      process.send!({ latencies, failure }, () => process.disconnect());
    });
  }
});
