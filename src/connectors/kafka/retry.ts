import { describeKafkaError, isRetriable, KafkaError } from './client.ts';

/** Counters of a Kafka connector's trouble with the cluster, readable while the job runs. */
export interface KafkaStats {
  /** Requests that failed because the cluster was unreachable or busy, and were retried. */
  retries: number;
  /** Times the cluster became unreachable (each outage counts once). */
  outages: number;
  /** Whether the connector is waiting for the cluster now. */
  unavailable: boolean;
  /** The last error seen, if any. */
  lastError: string | undefined;
  /** When the last outage ended (ms since the epoch; 0: none yet). */
  recoveredAt: number;
}

export function newStats(): KafkaStats {
  return { retries: 0, outages: 0, unavailable: false, lastError: undefined, recoveredAt: 0 };
}

/** Backoff between attempts while the cluster is unreachable: first and longest delay, in ms. */
export interface RetryOptions {
  readonly first?: number;
  readonly max?: number;
}

/**
 * Retries with exponential backoff while errors are retriable (the cluster unreachable, a leader
 * moving, a coordinator loading): one line on the log when an outage starts and one when it ends,
 * counted in `stats`. A non-retriable error, or `closed()`, ends the retries with the error.
 */
export class Retrier {
  private readonly first: number;
  private readonly max: number;
  private failing = 0;
  private since = 0;
  /** Whether the current run of failures was logged (an outage). */
  private logged = false;
  private readonly sleeps = new Set<() => void>();

  constructor(
    private readonly what: string,
    private readonly log: (line: string) => void,
    readonly stats: KafkaStats,
    options: RetryOptions = {},
    private readonly closed: () => boolean = () => false,
    /** Called before each retry (e.g. forget cached metadata). */
    private readonly onRetry?: () => void,
  ) {
    this.first = options.first ?? 100;
    this.max = options.max ?? 10_000;
  }

  async run<R>(action: string, fn: () => Promise<R>): Promise<R> {
    let delay = this.first;
    for (;;) {
      try {
        const result = await fn();
        this.succeeded();
        return result;
      } catch (error) {
        if (this.closed() || !isRetriable(error)) throw error;
        this.failed(action, error);
        await this.sleep(delay);
        if (this.closed()) throw error;
        delay = Math.min(this.max, delay * 2);
      }
    }
  }

  /**
   * Records a retriable failure (for loops that retry by themselves). An unreachable broker is an
   * outage at once (logged, counted); a retriable Kafka error (a leader election, a coordinator
   * loading) only if it lasts 5 s — those are routine and pass quickly (a leader election after a
   * broker restart takes a few seconds). So
   * is a failure within 10 s of the end of an outage (the same connector's other part, or a
   * broker still starting): one outage, one line.
   */
  failed(action: string, error: unknown): void {
    this.stats.retries++;
    this.stats.lastError = describeKafkaError(error);
    if (this.failing++ === 0) this.since = Date.now();
    const routine = error instanceof KafkaError || Date.now() - this.stats.recoveredAt < 10_000;
    if (!this.logged && (!routine || Date.now() - this.since >= 5_000)) {
      this.logged = true;
      this.stats.outages++;
      this.stats.unavailable = true;
      this.log(`${this.what}: ${action}: Kafka is unavailable (${describeKafkaError(error)}); retrying with backoff up to ${this.max / 1000} s apart`);
    }
    this.onRetry?.();
  }

  /** Records a success; logs the end of an outage. */
  succeeded(): void {
    if (this.failing === 0) return;
    if (this.logged) {
      this.log(`${this.what}: Kafka answers again, after ${this.failing} failed attempt(s) over ${((Date.now() - this.since) / 1000).toFixed(1)} s`);
      this.stats.recoveredAt = Date.now();
    }
    this.failing = 0;
    this.logged = false;
    this.stats.unavailable = false;
  }

  /** The delay before the next attempt of a loop that retries by itself. */
  backoff(): number {
    return Math.min(this.max, this.first * 2 ** Math.min(20, Math.max(0, this.failing - 1)));
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeps.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleeps.add(wake);
    });
  }

  /** Ends every sleep now (on close). */
  wakeAll(): void {
    for (const wake of [...this.sleeps]) wake();
  }
}
