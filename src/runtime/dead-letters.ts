/** A user function or parser failed and the job is fail-fast: the job stops with this error. */
export class StepFailure extends Error {
  constructor(
    readonly step: string,
    readonly record: unknown,
    cause: unknown,
  ) {
    super(`step '${step}' failed: ${errorMessage(cause)}`, { cause });
    this.name = 'StepFailure';
  }
}

/** The message of anything thrown. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A dead letter as the dashboard lists it: the latest ones of a job, whatever consumed them. */
export interface RecentDeadLetter {
  readonly step: string;
  readonly error: string;
  /** The record, printed and cut to 500 characters. */
  readonly record: string;
  /** Its event time, if it had one. */
  readonly time: number;
  /** When it was reported (epoch ms). */
  readonly at: number;
}

/** How many recent dead letters a job keeps for display. */
const RECENT = 50;

/**
 * Where dead letters go when no step consumes them (no `pipeline.deadLetters()`, or a step that
 * is itself downstream of the dead-letter stream): counted and logged — the first ten, then one in
 * a thousand — so that they never vanish silently. It also keeps the latest fifty of every step,
 * consumed or not, for the dashboard.
 */
export class DeadLetterLog {
  /** Dead letters logged so far. */
  count = 0;
  /** The latest dead letters, oldest first. */
  readonly recent: RecentDeadLetter[] = [];
  /** Remembered since the last {@link takeFresh} (a worker sends them to the main thread). */
  private fresh: RecentDeadLetter[] = [];

  constructor(private readonly log: (line: string) => void) {}

  /** Keeps a dead letter among the recent ones. */
  remember(step: string, record: unknown, error: unknown, time: number): void {
    this.add([{ step, error: errorMessage(error), record: preview(record, 500), time, at: Date.now() }]);
  }

  /** Adds dead letters remembered elsewhere (in a worker thread). */
  add(letters: readonly RecentDeadLetter[]): void {
    for (const l of letters) {
      this.recent.push(l);
      this.fresh.push(l);
    }
    if (this.recent.length > RECENT) this.recent.splice(0, this.recent.length - RECENT);
    if (this.fresh.length > RECENT) this.fresh.splice(0, this.fresh.length - RECENT);
  }

  /** The dead letters remembered since the last call. */
  takeFresh(): RecentDeadLetter[] {
    const out = this.fresh;
    this.fresh = [];
    return out;
  }

  report(step: string, record: unknown, error: unknown): void {
    this.count++;
    if (this.count <= 10 || this.count % 1000 === 0) {
      this.log(`spate: dead letter #${this.count} from step '${step}': ${errorMessage(error)}; record: ${preview(record)}`);
    }
  }
}

/** A short printable form of a record, for logs. */
export function preview(record: unknown, max = 200): string {
  let s: string;
  try {
    s = typeof record === 'string' ? record : (JSON.stringify(record, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(record));
  } catch {
    s = String(record);
  }
  return s.length > max ? s.slice(0, max) + '…' : s;
}
