/** Calls `onChange` once a burst of file events in `dir` or below has settled; returns the stop function. */
import { watch } from 'node:fs';

export function watchDirectory(dir: string, onChange: () => void, settleMs = 250): () => void {
  let timer: NodeJS.Timeout | null = null;
  // Editors save in several steps (write, rename, chmod): act once they are done.
  // Recursive: the lists in a subdirectory (lists/*.csv) are part of the rules.
  const w = watch(dir, { recursive: true }, () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(onChange, settleMs);
  });
  w.on('error', () => {});
  return () => {
    if (timer) clearTimeout(timer);
    w.close();
  };
}
