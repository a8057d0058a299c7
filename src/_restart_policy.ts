/**
 * When to restart a worker that exited, and when to give up.
 *
 * @module
 */
/** The numbers the policy works with (times in milliseconds). */
export interface RestartPolicyOptions {
  /** A worker that ran at least this long restarts at once. */
  minUptime: number;
  /** The first backoff delay; each further young death doubles it. */
  initialDelay: number;
  /** The backoff cap. */
  maxDelay: number;
  /** Boot errors in a row (per worker id) that halt the pool. */
  maxBootErrors: number;
}

/** What to do after a worker exited. */
export type RestartDecision =
  | { action: "restart"; delay: number }
  | { action: "halt"; bootErrors: number };

/**
 * Tracks one worker id's history of exits: repeated young deaths back off
 * exponentially, a worker that lived `minUptime` restarts at once, and
 * `maxBootErrors` boot errors in a row halt the pool.
 */
export class RestartPolicy {
  #options: RestartPolicyOptions;
  #youngDeaths = 0;
  #bootErrors = 0;

  constructor(options: RestartPolicyOptions) {
    this.#options = options;
  }

  /** The backoff cap. */
  get maxDelay(): number {
    return this.#options.maxDelay;
  }

  /** Boot errors in a row so far. */
  get bootErrors(): number {
    return this.#bootErrors;
  }

  /** The worker finished its start callbacks: boot errors no longer repeat. */
  booted(): void {
    this.#bootErrors = 0;
  }

  /**
   * Decides after an exit `uptime` ms after the spawn; `bootError` when the
   * worker never got ready (its `onStart` failed, it crashed or hung first).
   */
  exited(uptime: number, bootError: boolean): RestartDecision {
    const { minUptime, initialDelay, maxDelay, maxBootErrors } = this.#options;
    if (bootError) {
      this.#bootErrors++;
      if (this.#bootErrors >= maxBootErrors) {
        return { action: "halt", bootErrors: this.#bootErrors };
      }
    }
    if (uptime >= minUptime) {
      this.#youngDeaths = 0;
      return { action: "restart", delay: 0 };
    }
    // One early death is not a loop yet: the first restart is immediate.
    this.#youngDeaths++;
    if (this.#youngDeaths === 1) return { action: "restart", delay: 0 };
    const delay = initialDelay * 2 ** (this.#youngDeaths - 2);
    return { action: "restart", delay: Math.min(delay, maxDelay) };
  }
}
