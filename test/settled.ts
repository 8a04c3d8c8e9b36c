/** For tests of pure async logic: whether a promise has settled once pending callbacks ran. */
export const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** Whether `p` has settled by now. */
export const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true));
  await ticks();
  return done;
};
