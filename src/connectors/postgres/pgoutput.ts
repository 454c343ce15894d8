/**
 * The logical replication protocol as PostgreSQL's built-in `pgoutput` plugin speaks it
 * (protocol version 1): LSNs, the streaming-replication frames (XLogData, keepalive, standby
 * status update) and the logical messages inside them (Begin, Relation, Insert, Update, Delete,
 * Truncate, Commit, …). See "Streaming Replication Protocol" and "Logical Replication Message
 * Formats" in the PostgreSQL documentation.
 */
import { parserFor, type ValueOptions, type ValueParser } from './pg-values.ts';

/** A log sequence number: a byte position in the write-ahead log (64 bits). */
export type Lsn = bigint;

/** `16/B374D848` → 0x16B374D848. */
export function parseLsn(text: string): Lsn {
  const slash = text.indexOf('/');
  if (slash < 1 || !/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(text)) throw new Error(`not an LSN: '${text}'`);
  return (BigInt('0x' + text.slice(0, slash)) << 32n) | BigInt('0x' + text.slice(slash + 1));
}

/** 0x16B374D848 → `16/B374D848`, as PostgreSQL prints it. */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch. */
const PG_EPOCH_MICROS = 946_684_800_000_000n;

/** A PostgreSQL timestamp (µs since 2000-01-01) as milliseconds since 1970 (whole ms, floored). */
export function pgTimeToMillis(micros: bigint): number {
  const us = micros + PG_EPOCH_MICROS;
  return Number(us / 1000n) - (us % 1000n < 0n ? 1 : 0);
}

/** A frame the server sends during `START_REPLICATION` (the payload of one CopyData message). */
export type ServerFrame =
  | { readonly kind: 'data'; readonly start: Lsn; readonly end: Lsn; readonly body: Buffer }
  | { readonly kind: 'keepalive'; readonly end: Lsn; readonly replyRequested: boolean };

export function parseFrame(chunk: Buffer): ServerFrame {
  const tag = chunk[0];
  if (tag === 0x77 /* w */) {
    return { kind: 'data', start: chunk.readBigUInt64BE(1), end: chunk.readBigUInt64BE(9), body: chunk.subarray(25) };
  }
  if (tag === 0x6b /* k */) return { kind: 'keepalive', end: chunk.readBigUInt64BE(1), replyRequested: chunk[17] === 1 };
  throw new Error(`unexpected replication frame '${String.fromCharCode(tag ?? 0)}'`);
}

/**
 * A standby status update: `written` is what the client has received, `flushed` what it has made
 * durable — for a logical slot the server keeps every change after `flushed` (it becomes the
 * slot's `confirmed_flush_lsn`).
 */
export function statusUpdate(written: Lsn, flushed: Lsn, replyRequested: boolean, now = Date.now()): Buffer {
  const b = Buffer.alloc(34);
  b[0] = 0x72; // r
  b.writeBigUInt64BE(written, 1);
  b.writeBigUInt64BE(flushed, 9);
  b.writeBigUInt64BE(flushed, 17);
  b.writeBigInt64BE(BigInt(now) * 1000n - PG_EPOCH_MICROS, 25);
  b[33] = replyRequested ? 1 : 0;
  return b;
}

/** A column of a published table, as a Relation message describes it. */
export interface RelationColumn {
  readonly name: string;
  /** Part of the replica identity (the key sent with updates and deletes). */
  readonly isKey: boolean;
  readonly typeOid: number;
  readonly typeMod: number;
  readonly parse: ValueParser;
}

export interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** `d` default (primary key), `n` nothing, `f` full, `i` index. */
  readonly replicaIdentity: 'd' | 'n' | 'f' | 'i';
  readonly columns: readonly RelationColumn[];
}

/**
 * A tuple's values by column name. A column whose value was not sent because it is an unchanged
 * TOASTed value (an update that did not touch it) is absent, and named in `unchanged`.
 */
export interface Tuple {
  readonly values: Record<string, unknown>;
  readonly unchanged: readonly string[] | undefined;
  /** Bytes of the tuple's values (for dead-letter sizes). */
  readonly size: number;
  /** A value that did not convert (a custom parser threw): its text is kept, and this says why. */
  readonly error?: string | undefined;
}

/** A decoded logical replication message. */
export type LogicalMessage =
  | { readonly tag: 'begin'; readonly finalLsn: Lsn; readonly commitTime: number; readonly xid: number }
  | { readonly tag: 'commit'; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: number }
  | { readonly tag: 'relation'; readonly relation: Relation }
  | { readonly tag: 'insert'; readonly relation: Relation; readonly new: Tuple }
  | { readonly tag: 'update'; readonly relation: Relation; readonly old: Tuple | undefined; readonly oldIsKey: boolean; readonly new: Tuple }
  | { readonly tag: 'delete'; readonly relation: Relation; readonly old: Tuple; readonly oldIsKey: boolean }
  | { readonly tag: 'truncate'; readonly relations: readonly Relation[]; readonly cascade: boolean; readonly restartIdentity: boolean }
  | { readonly tag: 'other'; readonly type: string };

/**
 * Decodes `pgoutput` messages (protocol version 1), keeping the relations the server described
 * (it describes each before its first change in a session, and again after a schema change).
 * Values are converted by type OID (see pg-values.ts).
 */
export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;

  constructor(private readonly values: ValueOptions = {}) {}

  /** Forgets the relations (a new session describes them again). */
  reset(): void {
    this.relations.clear();
  }

  decode(body: Buffer): LogicalMessage {
    this.buf = body;
    this.pos = 1;
    switch (body[0]) {
      case 0x42 /* B */: {
        const finalLsn = this.u64();
        const commitTime = pgTimeToMillis(this.i64());
        return { tag: 'begin', finalLsn, commitTime, xid: this.u32() };
      }
      case 0x43 /* C */: {
        this.pos++; // flags
        const commitLsn = this.u64();
        const endLsn = this.u64();
        return { tag: 'commit', commitLsn, endLsn, commitTime: pgTimeToMillis(this.i64()) };
      }
      case 0x52 /* R */:
        return { tag: 'relation', relation: this.relation() };
      case 0x49 /* I */: {
        const relation = this.relationById(this.u32());
        this.pos++; // 'N'
        return { tag: 'insert', relation, new: this.tuple(relation) };
      }
      case 0x55 /* U */: {
        const relation = this.relationById(this.u32());
        let kind = this.buf[this.pos++];
        let old: Tuple | undefined;
        let oldIsKey = false;
        if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
          oldIsKey = kind === 0x4b;
          old = this.tuple(relation);
          kind = this.buf[this.pos++];
        }
        if (kind !== 0x4e /* N */) throw new Error(`pgoutput: unexpected update tuple kind ${kind}`);
        // A key tuple ('K') holds nulls for the other columns: only a full old row ('O') fills unchanged TOAST values.
        return { tag: 'update', relation, old, oldIsKey, new: this.tuple(relation, oldIsKey ? undefined : old) };
      }
      case 0x44 /* D */: {
        const relation = this.relationById(this.u32());
        const kind = this.buf[this.pos++];
        return { tag: 'delete', relation, old: this.tuple(relation), oldIsKey: kind === 0x4b };
      }
      case 0x54 /* T */: {
        const n = this.u32();
        const flags = this.buf[this.pos++]!;
        const relations: Relation[] = [];
        for (let i = 0; i < n; i++) relations.push(this.relationById(this.u32()));
        return { tag: 'truncate', relations, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
      }
      default:
        // Origin (O), Type (Y), Message (M): nothing a change record needs.
        return { tag: 'other', type: String.fromCharCode(body[0] ?? 0) };
    }
  }

  private relation(): Relation {
    const oid = this.u32();
    const schema = this.str();
    const name = this.str();
    const replicaIdentity = String.fromCharCode(this.buf[this.pos++]!) as Relation['replicaIdentity'];
    const n = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    const columns: RelationColumn[] = [];
    for (let i = 0; i < n; i++) {
      const flags = this.buf[this.pos++]!;
      const colName = this.str();
      const typeOid = this.u32();
      const typeMod = this.buf.readInt32BE(this.pos);
      this.pos += 4;
      columns.push({ name: colName, isKey: (flags & 1) !== 0, typeOid, typeMod, parse: parserFor(typeOid, this.values) });
    }
    const relation: Relation = { oid, schema, name, replicaIdentity, columns };
    this.relations.set(oid, relation);
    return relation;
  }

  private relationById(oid: number): Relation {
    const r = this.relations.get(oid);
    if (r === undefined) throw new Error(`pgoutput: a change of relation ${oid}, which the server did not describe`);
    return r;
  }

  /** A TupleData; with `old`, unchanged TOAST values are taken from it when it has them. */
  private tuple(relation: Relation, old?: Tuple): Tuple {
    const n = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    const values: Record<string, unknown> = {};
    let unchanged: string[] | undefined;
    let error: string | undefined;
    let size = 0;
    for (let i = 0; i < n; i++) {
      const column = relation.columns[i]!;
      const kind = this.buf[this.pos++];
      if (kind === 0x6e /* n */) values[column.name] = null;
      else if (kind === 0x74 /* t */) {
        const len = this.buf.readInt32BE(this.pos);
        this.pos += 4;
        const s = this.buf.toString('utf8', this.pos, this.pos + len);
        this.pos += len;
        size += len;
        try {
          values[column.name] = column.parse(s);
        } catch (e) {
          values[column.name] = s;
          error ??= `column ${column.name}: ${(e as Error).message}`;
        }
      } else if (kind === 0x75 /* u */) {
        if (old !== undefined && column.name in old.values) values[column.name] = old.values[column.name];
        else (unchanged ??= []).push(column.name);
      } else if (kind === 0x62 /* b */) {
        const len = this.buf.readInt32BE(this.pos);
        this.pos += 4;
        values[column.name] = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
        this.pos += len;
        size += len;
      } else throw new Error(`pgoutput: unknown tuple value kind ${kind}`);
    }
    return { values, unchanged, size, error };
  }

  private u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private u64(): bigint {
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  private i64(): bigint {
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  private str(): string {
    const end = this.buf.indexOf(0, this.pos);
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
}
