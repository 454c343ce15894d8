/**
 * What a failure from PostgreSQL means for the sink: wait and try again, blame one row, or stop.
 */

/** How the sink reacts to an error. */
export const ErrorKind = {
  /** The server is unreachable, restarting, overloaded, or the transaction lost a race: retry with backoff. */
  transient: 'transient',
  /** The data of some row is refused (a type, range or constraint error): find the row, dead-letter it. */
  row: 'row',
  /** Anything else (missing table, permissions, authentication): retrying will not help without a fix. */
  permanent: 'permanent',
} as const;
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

/** Node's socket errors, and what `pg` throws when the connection goes away. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);
const NETWORK_MESSAGES = /Connection terminated|connection timeout|timeout expired|Client has encountered a connection error|Client was closed|terminating connection|the database system is (starting up|shutting down|in recovery mode)|Connection ended/i;

/** The SQLSTATE of a server error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Classifies an error from `pg` (see {@link ErrorKind}). */
export function classify(error: unknown): ErrorKind {
  const state = sqlState(error);
  if (state !== undefined) {
    const cls = state.slice(0, 2);
    // 08 connection exception, 40 transaction rollback (serialization, deadlock), 53 insufficient
    // resources (disk full, too many connections), 57 operator intervention (shutdown, cannot
    // connect now), 55P03 lock not available, 58 system error (I/O).
    if (cls === '08' || cls === '40' || cls === '53' || cls === '57' || cls === '58' || state === '55P03') return ErrorKind.transient;
    // 22 data exception, 23 integrity constraint violation, P0 raised by a trigger.
    if (cls === '22' || cls === '23' || cls === 'P0') return ErrorKind.row;
    return ErrorKind.permanent;
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return ErrorKind.transient;
  const message = error instanceof Error ? error.message : String(error);
  if (NETWORK_MESSAGES.test(message)) return ErrorKind.transient;
  if (error instanceof AggregateError && error.errors.some((e) => classify(e) === ErrorKind.transient)) return ErrorKind.transient;
  return ErrorKind.permanent;
}

/** A one-line description of a server error: message, SQLSTATE, and the constraint or column. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const e = error as Error & { code?: string; detail?: string; constraint?: string; column?: string };
  let s = e.message || (error instanceof AggregateError ? error.errors.map((x: unknown) => describeError(x)).join('; ') : '') || e.name;
  const extra: string[] = [];
  if (sqlState(error) !== undefined) extra.push(`SQLSTATE ${e.code}`);
  else if (typeof e.code === 'string' && !s.includes(e.code)) extra.push(e.code);
  if (e.constraint) extra.push(`constraint ${e.constraint}`);
  if (e.column) extra.push(`column ${e.column}`);
  if (extra.length > 0) s += ` (${extra.join(', ')})`;
  if (e.detail) s += `: ${e.detail}`;
  return s;
}
