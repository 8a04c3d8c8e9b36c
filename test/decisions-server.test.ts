/** The decision lookup on its own thread: fed from this one, answering over HTTP. */
import t from 'tap';
import { DecisionServer } from '../src/http/decisions-server.js';

t.test('rows, lists and the clock sent from the engines reach the answers', async (t) => {
  const server = await DecisionServer.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => server.close());
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000).toISOString();
  const ask = async (q: string) => (await fetch(`${server.url}/v1/decisions?${q}`)).json();
  // Messages reach the thread asynchronously: asked again until the answer has them (or 50 times).
  const askFor = async (q: string, verdict: string) => {
    let answer = await ask(q);
    for (let i = 0; i < 50 && answer.verdict !== verdict; i++) answer = await ask(q);
    return answer;
  };
  const lists = [{ name: 'block_ips', file: 'block_ips.csv', columns: ['ip_address', 'reason'], rows: [['10.0.0.7', 'ring']] }];
  server.feed({
    rule: 'suspicious_ips',
    severity: 'high',
    activeMicros: 60_000_000,
    replace: ['source_partition', 'ip_address'],
    names: ['source_partition', 'ip_address', 'window_start', 'window_end', 'order_count'],
    columns: [[0], ['10.0.0.1'], [at(0)], [at(20)], ['12']],
    rowCount: 1,
  });
  server.update(lists, Date.UTC(2026, 0, 1) * 1000 + 30_000_000);
  t.match(await askFor('ip_address=10.0.0.1', 'review'), { verdict: 'review', keys: { ip_address: { detections: [{ rule: 'suspicious_ips', count: 12 }] } } });
  t.equal((await askFor('ip_address=10.0.0.7', 'block')).verdict, 'block');
  server.update(lists, Date.UTC(2026, 0, 1) * 1000 + 81_000_000);
  t.equal((await askFor('ip_address=10.0.0.1', 'none')).verdict, 'none', 'the clock moved past the burst: over');
  t.equal((await fetch(`${server.url}/v1/decisions`)).status, 400, 'a question without a key is refused');
});

t.test('a port in use is one clear error', async (t) => {
  const first = await DecisionServer.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => first.close());
  const port = Number(new URL(first.url).port);
  await t.rejects(DecisionServer.start({ host: '127.0.0.1', port }), {
    code: 'PORT_IN_USE',
    message: new RegExp(`port ${port} .* --decisions-port`),
  });
});
