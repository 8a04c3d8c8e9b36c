/**
 * Lets one engine's DuckDB work go first. The per-order lane commits a high-value
 * order after one small batch of its own; on two cores its statements otherwise
 * queue behind the window engines' (whose burst and window queries take several
 * times longer), and that wait, not its own work, is most of its latency. While
 * the lane computes a batch of live traffic, the other engines' statements wait
 * before they start, each at most `maxWaitMs`, so a busy lane slows them down but
 * never stops them.
 */
export class Precedence {
  private running = 0;
  private waiting: (() => void)[] = [];

  constructor(private readonly maxWaitMs: number) {}

  /** Runs `fn` as the work that goes first. */
  async first<T>(fn: () => Promise<T>): Promise<T> {
    this.running++;
    try {
      return await fn();
    } finally {
      if (--this.running === 0) {
        const go = this.waiting;
        this.waiting = [];
        for (const resolve of go) resolve();
      }
    }
  }

  /** Null when nothing goes first now; otherwise resolves when it is done, or after maxWaitMs. */
  turn(): Promise<void> | null {
    if (this.running === 0) return null;
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.maxWaitMs);
      this.waiting.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
