/** A seeded generator for tests and benches (fuzz requests, the fleet simulation, the soak). */

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const chance = (p: number) => next() < p;
  const alnum = (n: number) => Array.from({ length: n }, () => pick([...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'])).join('');
  const between = (lo: number, hi: number) => lo + next() * (hi - lo);
  return { next, int, pick, chance, between, alnum };
}
export type Rng = ReturnType<typeof rng>;

/** A lognormal draw around `medianMs` (clamped to [minMs, maxMs]), × scale: latencies of the fleet simulation. */
export function lognormal(random: () => number, d: { medianMs: number; sigma: number; minMs: number; maxMs: number }, scale = 1): () => number {
  return () => {
    const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    return scale * Math.min(d.maxMs, Math.max(d.minMs, d.medianMs * Math.exp(d.sigma * z)));
  };
}
