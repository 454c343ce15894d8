import { crc32 } from 'node:zlib';
import type { WriteAheadLog } from '../wal/write-ahead-log.ts';
import { decodeEntry } from './entry.ts';

/** What identifies a QoS 1 message for redelivery: its sender's session, packet id, and a hash of topic and payload. */
export interface MessageIdentity {
  /** The session the packet id belongs to: the publishing client's id, or the external broker's session. */
  readonly session: string;
  readonly id: number;
  readonly hash: number;
}

/** The hash of a message's topic and payload. */
export function messageHash(topic: string, payload: Uint8Array): number {
  return crc32(payload, crc32(topic + '\u0000'));
}

/** A log entry's metadata for an MQTT message: topic, then (QoS > 0) session, packet id and hash, separated by U+0000. */
export function messageMeta(topic: string, identity: MessageIdentity | null): string {
  return identity === null ? topic : `${topic}\u0000${identity.session}\u0000${identity.id}\u0000${identity.hash}`;
}

/** The topic of an entry's metadata. */
export function topicOf(meta: string): string {
  const end = meta.indexOf('\u0000');
  return end < 0 ? meta : meta.slice(0, end);
}

function identityOf(meta: string): MessageIdentity | null {
  const parts = meta.split('\u0000');
  if (parts.length !== 4) return null;
  return { session: parts[1]!, id: Number(parts[2]), hash: Number(parts[3]) };
}

interface Tail {
  /** The session's messages in the log, in log order (one per message, however many entries it made). */
  readonly messages: Array<{ readonly id: number; readonly hash: number; readonly durable: Promise<void> }>;
  /** While a run of redeliveries matches the log: the index the next one must match. */
  cursor: number;
}

/**
 * Recognises QoS 1 messages that are delivered again although the log already holds them: the
 * sender (or broker) did not get the PUBACK — the process died between the append and the
 * acknowledgement, or the connection dropped. Such a message is acknowledged without a second
 * append, so a crash does not duplicate it.
 *
 * Why it is safe: PUBACKs are sent in order, so what a sender has not seen acknowledged is a suffix
 * of what it sent, and it redelivers that suffix, in order, first thing on its next connection
 * (with the DUP flag, which some clients — mqtt.js — leave out: the caller also asks about the
 * first messages of a connection). The log holds a prefix of what was sent. So the redeliveries that the log holds are the last messages of that
 * session in the log, in the same order: the first DUP message is looked up as the last message
 * of its session with its packet id (ids in flight are unique; a sender reuses an id only after
 * its PUBACK, and ids count up, so an older message with the same id is ~65 535 messages back,
 * beyond the window), its hash must match, and each redelivery after it must match the next one
 * in the log. A message that does not match is new: appended. (This assumes senders number their
 * packets upwards, as mqtt.js, Paho and Mosquitto do; a sender that reuses the lowest free id
 * could, right after reconnecting, send a new message identical in id and content to its last
 * one, and see it taken for a redelivery.)
 */
export class Redeliveries {
  private readonly sessions = new Map<string, Tail>();

  constructor(
    /** Messages remembered per session. */
    private readonly window = 10_000,
  ) {}

  /** Rebuilds what the log's last `entries` entries hold (at start, before anything is appended). */
  async load(wal: WriteAheadLog, entries = this.window): Promise<void> {
    const end = wal.durableSequence;
    const cursor = wal.cursor(Math.max(wal.firstSequence, end - entries));
    try {
      let last = '';
      while (cursor.position < end) {
        const got = cursor.take(Math.min(4096, end - cursor.position));
        if (got.length === 0) {
          await cursor.ready();
          continue;
        }
        for (const raw of got) {
          const { meta } = decodeEntry(raw);
          // The entries of one message (an array payload) share their metadata.
          if (meta === last) continue;
          last = meta;
          const identity = identityOf(meta);
          if (identity !== null) this.appended(identity, Promise.resolve());
        }
      }
    } finally {
      cursor.close();
    }
  }

  /** Records a message appended to the log (in append order); `durable` resolves once it is. */
  appended(m: MessageIdentity, durable: Promise<void>): void {
    let tail = this.sessions.get(m.session);
    if (tail === undefined) {
      tail = { messages: [], cursor: -1 };
      this.sessions.set(m.session, tail);
    }
    tail.messages.push({ id: m.id, hash: m.hash, durable });
    tail.cursor = -1;
    if (tail.messages.length > this.window * 2) tail.messages.splice(0, tail.messages.length - this.window);
  }

  /**
   * For a message delivered with the DUP flag: the durability of the log's copy if the log holds
   * it already (acknowledge it once that resolves, append nothing), else null (append it).
   */
  copyOf(m: MessageIdentity): Promise<void> | null {
    const tail = this.sessions.get(m.session);
    if (tail === undefined) return null;
    const messages = tail.messages;
    if (tail.cursor >= 0 && tail.cursor < messages.length) {
      const next = messages[tail.cursor]!;
      if (next.id === m.id && next.hash === m.hash) {
        tail.cursor++;
        return next.durable;
      }
    }
    tail.cursor = -1;
    for (let i = messages.length - 1; i >= Math.max(0, messages.length - this.window); i--) {
      const e = messages[i]!;
      if (e.id !== m.id) continue;
      if (e.hash !== m.hash) return null;
      tail.cursor = i + 1;
      return e.durable;
    }
    return null;
  }
}
