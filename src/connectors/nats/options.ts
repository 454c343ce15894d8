/**
 * Options of the NATS connectors that users write. Kept apart from the code that uses the client,
 * so that Spate's declarations never expose the client's own types.
 */

/** The address used when none is given. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** TLS options, passed to the client: files, or PEM text. */
export interface NatsTlsOptions {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** TLS before the server's INFO (the server must be configured with `handshake_first`). */
  readonly handshakeFirst?: boolean;
}

/** Where the NATS server is and how to authenticate; everything else passes through to the client. */
export interface NatsConnectionOptions {
  /** Server URL(s) (default `nats://127.0.0.1:4222`). */
  readonly servers?: string | readonly string[];
  /** A credentials file (`.creds`: user JWT and NKey seed), as `nats --creds` takes it. */
  readonly credsFile?: string;
  /** A token (`authorization { token }` on the server). */
  readonly token?: string;
  readonly user?: string;
  readonly pass?: string;
  /** TLS (a `tls://` URL also turns it on). */
  readonly tls?: NatsTlsOptions;
  /** The connection's name as the server lists it (default: `spate <step id>`). */
  readonly name?: string;
  /** Any other option of the client's `connect` (`@nats-io/transport-node`), passed as given. */
  readonly client?: Readonly<Record<string, unknown>>;
}

/** Backoff between attempts while the server is away: first and longest delay in ms. */
export interface RetryOptions {
  readonly first?: number;
  readonly max?: number;
}


/** Counters of a JetStream sink's publishing. */
export interface PublisherStats {
  /** Messages the server acknowledged. */
  acked: number;
  /** Of those, messages the server had already stored (a resend or a re-commit deduplicated). */
  duplicates: number;
  /** Messages sent again after a timeout or a refusal. */
  resent: number;
}

/** Counters of a JetStream source (summed over its readers in this thread), for tests and monitoring. */
export interface JetStreamSourceStats {
  /** Times the connection came back after breaking. */
  reconnects: number;
  /** Consumers replaced (a gap in deliveries, a lost consumer, missed heartbeats, a reconnection). */
  consumerResets: number;
  /** Outages waited out with backoff (at open, or while replacing a consumer). */
  outages: number;
  /** Whether a reader is waiting for the server now. */
  waiting: boolean;
}
