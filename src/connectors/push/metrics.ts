/** Why a push source refused a request, a message or a part of one. */
export type RejectReason =
  /** Larger than the request or message size limit (HTTP 413). */
  | 'too-large'
  /** Not valid UTF-8. */
  | 'invalid-utf8'
  /** Not JSON (or not NDJSON). */
  | 'malformed'
  /** Well-formed, but the schema refused it. */
  | 'invalid'
  /** No or a wrong bearer token (HTTP 401): never written anywhere. */
  | 'unauthorized'
  /** A content type or encoding the endpoint does not read (HTTP 415). */
  | 'unsupported'
  /** A request with no record in it. */
  | 'empty';

/**
 * Counters of a push source, raised by its endpoint as requests and messages arrive (in the thread
 * that listens: the main thread). Read them from the source object (`source.metrics`) — a plain
 * object of numbers, ready for a metrics endpoint or a dashboard; counters only grow, gauges
 * (`backlog`, `connections`) are current values.
 */
export interface PushMetrics {
  /** Requests (HTTP), messages (WebSocket) or PUBLISH packets (MQTT) received. */
  requests: number;
  /** Records appended to the write-ahead log (acknowledged once durable). */
  accepted: number;
  /** Records, parts or requests refused, in total. */
  rejected: number;
  /** Refusals by reason. */
  readonly rejectedBy: Record<RejectReason, number>;
  /** Requests or messages answered retry-later (429/503), or held, because the backlog was full. */
  backpressured: number;
  /** Payload bytes received. */
  bytes: number;
  /** Entries appended to the log that the job has not read yet (a gauge). */
  backlog: number;
  /** Open client connections (a gauge). */
  connections: number;
  /** Appends that failed (the disk): the request or message was not acknowledged. */
  appendFailures: number;
  /**
   * Requests sent again under an Idempotency-Key (HTTP) and MQTT messages delivered again (DUP)
   * that the log already held: answered or acknowledged, not appended twice.
   */
  duplicates: number;
}

/** Fresh counters. */
export function newPushMetrics(): PushMetrics {
  return {
    requests: 0,
    accepted: 0,
    rejected: 0,
    rejectedBy: { 'too-large': 0, 'invalid-utf8': 0, malformed: 0, invalid: 0, unauthorized: 0, unsupported: 0, empty: 0 },
    backpressured: 0,
    bytes: 0,
    backlog: 0,
    connections: 0,
    appendFailures: 0,
    duplicates: 0,
  };
}
