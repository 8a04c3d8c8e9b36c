/** `--console`: detections printed as they happen, for debugging rules. */
import type { EngineEmitter } from './engine/events.js';
import { rowsOf } from './types.js';

const won = (v: unknown) => `${Number(v).toLocaleString('en-US')} KRW`;

export function printDetections(events: EngineEmitter, write: (line: string) => void): void {
  events.on('batch:end', (b) => {
    for (const r of b.results) {
      for (const row of rowsOf(r)) {
        if (r.rule === 'suspicious_ips') {
          write(`[suspicious ip] ${row.ip_address} ${row.order_count} orders, ${won(row.total_spent)} since ${row.window_start} (last ${row.window_end})`);
        } else if (r.rule === 'high_value_orders') {
          write(`[high value]    ${row.order_id} ${row.product_name} x${row.quantity} = ${won(row.total_price)} from ${row.ip_address} at ${row.order_time}`);
        } else if (r.rule === 'realtime_stats') {
          write(`[window]        ${row.stat_time} p${row.source_partition}: ${row.total_orders} orders, ${won(row.total_sales)}, ${row.suspicious_ip_count} suspicious IPs`);
        }
      }
    }
    if (b.deadLetters > 0 || b.late > 0) write(`[input]         ${b.deadLetters} dead letters, ${b.late} late events in batch ${b.batchId}`);
  });
}
