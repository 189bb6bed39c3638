/**
 * EC2's request throttling: a bucket holding up to `capacity` tokens, refilled
 * at `refillPerSecond`; each request takes one token and a request that finds
 * the bucket empty is refused (it takes nothing). EC2 adds the refill once a
 * second; this bucket refills continuously, which gives the same totals over
 * any whole second and makes "wait 1 s, get 5 more" exact.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly capacity: number,
    readonly refillPerSecond: number,
    private readonly now: () => number,
  ) {
    this.tokens = capacity;
    this.last = now();
  }

  /** Takes a token; false when the bucket is empty (the request is throttled). */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.refillPerSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Tokens available now, rounded down. */
  available(): number {
    return Math.floor(Math.min(this.capacity, this.tokens + ((this.now() - this.last) / 1000) * this.refillPerSecond));
  }
}
