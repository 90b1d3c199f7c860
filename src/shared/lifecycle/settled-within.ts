/**
 * Whether `p` settles (resolved or rejected) within `ms`; leaves no timer
 * behind. A rejection is taken as settled, not handed on: `finally` would hand
 * it on as a new, unhandled one.
 */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(t);
      resolve(true);
    };
    p.then(done, done);
  });
}
