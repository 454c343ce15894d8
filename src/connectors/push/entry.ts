/**
 * The write-ahead log entries of push sources. One entry per record (or per rejected part):
 *
 *   kind (u8) · received at (f64, ms since the epoch) · meta length (u16) · meta (UTF-8) · payload
 *
 * A record's payload is the bytes the record was decoded from (a request body, an NDJSON line,
 * an MQTT payload): the reader decodes it again with the same format and schema, so a replay
 * gives the same records. A dead letter's payload is JSON `{ error, record }`. `meta` carries
 * what the endpoint knows beside the payload (an MQTT topic), fields separated by U+0000.
 */

/** What an entry holds. */
export const EntryKind = {
  /** A record, as received. */
  Record: 1,
  /** A rejected payload or part of one: a dead letter of the source step. */
  DeadLetter: 2,
} as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

const HEAD = 11;

/** Encodes an entry. */
export function encodeEntry(kind: EntryKind, receivedAt: number, meta: string, payload: Uint8Array): Buffer {
  const metaLength = meta.length === 0 ? 0 : Buffer.byteLength(meta, 'utf8');
  if (metaLength > 0xffff) throw new RangeError(`entry metadata of ${metaLength} bytes is larger than 65535`);
  const out = Buffer.allocUnsafe(HEAD + metaLength + payload.length);
  out[0] = kind;
  out.writeDoubleLE(receivedAt, 1);
  out.writeUInt16LE(metaLength, 9);
  if (metaLength > 0) out.write(meta, HEAD, 'utf8');
  out.set(payload, HEAD + metaLength);
  return out;
}

/** A decoded entry; `payload` shares the entry's memory. */
export interface Entry {
  readonly kind: EntryKind;
  readonly receivedAt: number;
  readonly meta: string;
  readonly payload: Buffer;
}

/** Decodes an entry written by {@link encodeEntry}. */
export function decodeEntry(entry: Uint8Array): Entry {
  const b = Buffer.from(entry.buffer, entry.byteOffset, entry.length);
  if (b.length < HEAD) throw new Error(`a push entry of ${b.length} bytes is shorter than its header`);
  const kind = b[0] as EntryKind;
  if (kind !== EntryKind.Record && kind !== EntryKind.DeadLetter) throw new Error(`unknown push entry kind ${kind}`);
  const metaLength = b.readUInt16LE(9);
  return {
    kind,
    receivedAt: b.readDoubleLE(1),
    meta: metaLength === 0 ? '' : b.toString('utf8', HEAD, HEAD + metaLength),
    payload: b.subarray(HEAD + metaLength),
  };
}
