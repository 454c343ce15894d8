/**
 * Exchange codec benchmark: what it costs to move a record from one worker thread to another.
 *
 * Part 1, one thread: per-record encode + decode cost (ns/record) and message size (bytes/record)
 * for batches of 1024 records of four shapes — NEXMark bids, the NEXMark event mix (persons,
 * auctions, bids 1:3:46), window results `{ key, start, end, value }` and small integers — with
 * each codec producing one transferable buffer per batch (times + values) and decoding into a
 * `Batch`:
 * - `structured clone`: `postMessage({ values, times })` on a real MessageChannel and
 *   `receiveMessageOnPort` on the other end, in the same thread (serialize + deserialize +
 *   the port; bytes: the size of `v8.serialize` of the same message);
 * - `v8.serialize`: the same algorithm into a Buffer (what a transferred-buffer exchange built on it
 *   would cost);
 * - `msgpackr plain`: msgpackr's `pack`/`unpack` (objects as maps);
 * - `msgpackr records`: `useRecords` (record structures defined inside every message);
 * - `msgpackr sequential`: one Packr/Unpackr pair per channel (`sequential`: structures defined
 *   once per channel);
 * - `columnar`: Spate's channel codec (`src/runtime/batch-codec.ts`).
 * Every codec is checked to round-trip the data before it is timed. Each shape runs in a process
 * of its own (what one shape leaves behind in V8 skews the next shape's figures). Rounds interleave the codecs
 * (so a burst of load on this shared machine hits all of them), each round times every codec on
 * 16 distinct batches, and the table gives the median over rounds, the spread (min–max over
 * rounds) and the ratio to structured clone computed within each round (median of the ratios).
 *
 * Part 2, two threads: NEXMark bids encoded in the main thread, posted with the buffer transferred
 * over a MessageChannel to a Worker that decodes them into a Batch and touches every record,
 * with credits (at most 8 messages in flight). Steady-state throughput, and the busy time of each
 * thread per record (event-loop utilization), per codec; codecs interleaved over `--reps`
 * repetitions, the ratio to structured clone taken within each repetition.
 *
 * `npx tsx bench/codecs.ts [--rounds N] [--seconds S] [--reps R] [--shapes a,b] [--codecs a,b]`
 * prints markdown tables.
 */
import './no-native.ts';
import { MessageChannel, Worker, isMainThread, parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { deserialize, serialize, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Packr, Unpackr, isNativeAccelerationEnabled, pack, unpack } from 'msgpackr';
import { Batch } from '../src/runtime/batch.ts';
import { BatchDecoder, BatchEncoder } from '../src/runtime/batch-codec.ts';
import { NexmarkGenerator } from '../src/nexmark/generator.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (options?: { type: 'minor' | 'major' }) => void;

/** Records per batch (`--batch N`, default 1024) and distinct batches per pass (at least 16K records). */
const BATCH = arg('--batch', 1024);
const POOL = Math.max(16, Math.ceil(16_384 / BATCH));

// ---- Data ------------------------------------------------------------------------------------

interface Data {
  readonly values: unknown[][];
  readonly times: Float64Array[];
}

function makeData(shape: string): Data {
  const gen = new NexmarkGenerator();
  const values: unknown[][] = [];
  const times: Float64Array[] = [];
  let n = 0;
  for (let b = 0; b < POOL; b++) {
    const v: unknown[] = [];
    const t = new Float64Array(BATCH);
    while (v.length < BATCH) {
      const i = v.length;
      if (shape === 'bids') {
        const e = gen.event(n);
        if (e.type === 'bid') {
          t[i] = gen.time(n);
          v.push(e);
        }
      } else if (shape === 'mix') {
        t[i] = gen.time(n);
        v.push(gen.event(n));
      } else if (shape === 'window results') {
        // Sliding windows (10 s, slide 2 s) firing: counts per auction, five windows per batch.
        const w = Math.floor(n / 205);
        const start = 1_700_000_000_000 + w * 2000;
        t[i] = start + 9999;
        v.push({ key: 1000 + ((n * 7919) % 5000), start, end: start + 10_000, value: 1 + ((n * 31) % 97) });
      } else {
        t[i] = n;
        v.push((n * 7919) % 1000);
      }
      n++;
    }
    values.push(v);
    times.push(t);
  }
  return { values, times };
}

// ---- Codecs ----------------------------------------------------------------------------------

/** One channel of a codec: encode a batch slice into one buffer, decode it into a Batch. */
interface Channel {
  encode(values: unknown[], times: Float64Array): ArrayBuffer | object;
  decode(message: ArrayBuffer | object, into: Batch<unknown>): void;
  /** Bytes the message occupies (for structured clone: its v8.serialize size). */
  size(message: ArrayBuffer | object): number;
  close?(): void;
}

/** msgpack of the values array behind an 8-byte header and the times. */
function framed(packValues: (values: unknown[]) => Uint8Array, unpackValues: (bytes: Uint8Array) => unknown[]): Channel {
  return {
    encode(values, times) {
      const bytes = packValues(values);
      const n = values.length;
      const ab = new ArrayBuffer(8 + n * 8 + bytes.length);
      new Uint32Array(ab, 0, 2)[0] = n;
      new Float64Array(ab, 8, n).set(times);
      new Uint8Array(ab, 8 + n * 8).set(bytes);
      return ab;
    },
    decode(message, into) {
      const ab = message as ArrayBuffer;
      const n = new Uint32Array(ab, 0, 2)[0]!;
      const o = into.length;
      into.times.set(new Float64Array(ab, 8, n), o);
      const values = unpackValues(new Uint8Array(ab, 8 + n * 8));
      for (let i = 0; i < n; i++) into.values[o + i] = values[i];
      into.length = o + n;
    },
    size: (message) => (message as ArrayBuffer).byteLength,
  };
}

const codecs: Record<string, () => Channel> = {
  'structured clone': () => {
    const { port1, port2 } = new MessageChannel();
    return {
      encode(values, times) {
        const message = { values, times };
        port1.postMessage(message);
        return message;
      },
      decode(_message, into) {
        const { values, times } = receiveMessageOnPort(port2)!.message as { values: unknown[]; times: Float64Array };
        const o = into.length;
        into.times.set(times, o);
        for (let i = 0; i < values.length; i++) into.values[o + i] = values[i];
        into.length = o + values.length;
      },
      size: (message) => serialize(message).length,
      close() {
        port1.close();
      },
    };
  },
  'v8.serialize': () => ({
    encode: (values, times) => serialize({ values, times }),
    decode(message, into) {
      const { values, times } = deserialize(message as Buffer) as { values: unknown[]; times: Float64Array };
      const o = into.length;
      into.times.set(times, o);
      for (let i = 0; i < values.length; i++) into.values[o + i] = values[i];
      into.length = o + values.length;
    },
    size: (message) => (message as Buffer).length,
  }),
  'msgpackr plain': () => framed((v) => pack(v), (b) => unpack(b) as unknown[]),
  'msgpackr records': () => {
    const options = { useRecords: true, moreTypes: true, mapsAsObjects: false } as const;
    const packr = new Packr(options);
    const unpackr = new Unpackr(options);
    return framed((v) => packr.pack(v), (b) => unpackr.unpack(b) as unknown[]);
  },
  'msgpackr sequential': () => {
    const options = { useRecords: true, sequential: true, moreTypes: true, mapsAsObjects: false } as const;
    const packr = new Packr(options);
    const unpackr = new Unpackr(options);
    return framed((v) => packr.pack(v), (b) => unpackr.unpack(b) as unknown[]);
  },
  columnar: () => {
    const encoder = new BatchEncoder();
    const decoder = new BatchDecoder();
    return {
      encode: (values, times) => encoder.encode(values, times),
      decode: (message, into) => decoder.decode(message as ArrayBuffer, into),
      size: (message) => (message as ArrayBuffer).byteLength,
    };
  },
};

// ---- Part 1: one thread ----------------------------------------------------------------------

function verify(name: string, channel: Channel, data: Data): void {
  const into = new Batch<unknown>(BATCH);
  for (let b = 0; b < Math.min(3, POOL); b++) {
    into.length = 0;
    channel.decode(channel.encode(data.values[b]!, data.times[b]!), into);
    for (let i = 0; i < BATCH; i++) {
      if (!isDeepStrictEqual(into.values[i], data.values[b]![i]) || into.times[i] !== data.times[b]![i]) {
        throw new Error(`${name} does not round-trip record ${i}: ${JSON.stringify(data.values[b]![i])} → ${JSON.stringify(into.values[i])}`);
      }
    }
  }
}

/**
 * Encodes every batch of the pool, then decodes every message in order (so no timer is read per
 * batch); returns [encode ns, decode ns] per record. Starts from a collected young generation, so
 * each codec pays for its own garbage, not the previous one's.
 */
function pass(channel: Channel, data: Data, into: Batch<unknown>, sink: { x: number }): [number, number] {
  into.values.fill(undefined);
  gc({ type: 'minor' });
  const messages = new Array<ArrayBuffer | object>(POOL);
  const t0 = performance.now();
  for (let b = 0; b < POOL; b++) messages[b] = channel.encode(data.values[b]!, data.times[b]!);
  const t1 = performance.now();
  for (let b = 0; b < POOL; b++) {
    into.length = 0;
    channel.decode(messages[b]!, into);
    sink.x += into.length;
  }
  const t2 = performance.now();
  const records = POOL * BATCH;
  return [((t1 - t0) * 1e6) / records, ((t2 - t1) * 1e6) / records];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Row {
  shape: string;
  codec: string;
  encode: number;
  decode: number;
  total: number;
  min: number;
  max: number;
  ratio: number;
  bytes: number;
}

function inThread(rounds: number): Row[] {
  const rows: Row[] = [];
  const sink = { x: 0 };
  for (const shape of SHAPES.filter((s) => only('--shapes', s))) {
    const data = makeData(shape);
    const names = Object.keys(codecs).filter((c) => only('--codecs', c));
    const channels = names.map((name) => codecs[name]!());
    const into = new Batch<unknown>(BATCH);
    names.forEach((name, k) => verify(name, channels[k]!, data));
    const bytes = names.map((_, k) => {
      const c = channels[k]!;
      let total = 0;
      for (let b = 0; b < POOL; b++) {
        const m = c.encode(data.values[b]!, data.times[b]!);
        total += c.size(m);
        into.length = 0;
        c.decode(m, into);
      }
      return total / (POOL * BATCH);
    });
    // Warm-up: let every codec reach optimized code.
    for (let w = 0; w < 20; w++) channels.forEach((c) => pass(c, data, into, sink));
    const samples = names.map(() => ({ enc: [] as number[], dec: [] as number[], total: [] as number[], ratio: [] as number[] }));
    for (let r = 0; r < rounds; r++) {
      const totals: number[] = [];
      // Rotate the order each round so no codec always runs right after the same one.
      for (let q = 0; q < names.length; q++) {
        const k = (q + r) % names.length;
        const [e, d] = pass(channels[k]!, data, into, sink);
        samples[k]!.enc.push(e);
        samples[k]!.dec.push(d);
        totals[k] = e + d;
        samples[k]!.total.push(e + d);
      }
      names.forEach((_, k) => samples[k]!.ratio.push(totals[k]! / totals[0]!));
    }
    names.forEach((name, k) => {
      const s = samples[k]!;
      rows.push({
        shape,
        codec: name,
        encode: median(s.enc),
        decode: median(s.dec),
        total: median(s.total),
        min: Math.min(...s.total),
        max: Math.max(...s.total),
        ratio: median(s.ratio),
        bytes: bytes[k]!,
      });
    });
    channels.forEach((c) => c.close?.());
  }
  if (sink.x === 0) console.log('');
  return rows;
}

// ---- Part 2: two threads ---------------------------------------------------------------------

const WINDOW = 8;

interface CrossResult {
  codec: string;
  recordsPerSecond: number;
  senderNs: number;
  receiverNs: number;
}

/** Worker side: decode every message, touch every record, return a credit. */
function receiver(): void {
  const { codec } = workerData as { codec: string };
  parentPort!.once('message', (port: MessagePort) => {
    const channel = codecs[codec]!();
    const into = new Batch<unknown>(BATCH);
    let records = 0;
    let check = 0;
    let startElu = performance.eventLoopUtilization();
    port.on('message', (m: unknown) => {
      if (typeof m === 'string') {
        if (m === 'start') {
          records = 0;
          startElu = performance.eventLoopUtilization();
        } else {
          const elu = performance.eventLoopUtilization(startElu);
          port.postMessage({ records, activeMs: elu.active, check });
        }
        return;
      }
      into.length = 0;
      if (codec === 'structured clone') {
        const { values, times } = m as { values: unknown[]; times: Float64Array };
        into.times.set(times);
        for (let i = 0; i < values.length; i++) into.values[i] = values[i];
        into.length = values.length;
      } else {
        channel.decode(m as ArrayBuffer, into);
      }
      for (let i = 0; i < into.length; i++) check += (into.values[i] as { price: number }).price;
      records += into.length;
      port.postMessage(1);
    });
  });
}

async function crossThread(codec: string, seconds: number, data: Data): Promise<CrossResult> {
  // tsx's hooks do not follow the process into workers: each worker registers them itself.
  const bootstrap =
    `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
    `.then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); });`;
  const worker = new Worker(bootstrap, { eval: true, workerData: { codec } });
  const { port1, port2 } = new MessageChannel();
  worker.postMessage(port2, [port2]);
  const channel = codecs[codec]!();
  let credits = WINDOW;
  let b = 0;
  let sending = true;
  const send = (): void => {
    while (sending && credits > 0) {
      credits--;
      const values = data.values[b % POOL]!;
      const times = data.times[b % POOL]!;
      b++;
      if (codec === 'structured clone') {
        port1.postMessage({ values, times });
      } else {
        const m = channel.encode(values, times) as ArrayBuffer;
        port1.postMessage(m, [m]);
      }
    }
  };
  const stats = new Promise<{ records: number; activeMs: number }>((resolve) => {
    port1.on('message', (m: unknown) => {
      if (typeof m === 'number') {
        credits += m;
        send();
      } else resolve(m as { records: number; activeMs: number });
    });
  });
  send();
  await new Promise((r) => setTimeout(r, 500)); // warm-up
  port1.postMessage('start');
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  port1.postMessage('stop');
  const elapsed = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  const result = await stats;
  sending = false;
  await worker.terminate();
  port1.close();
  return {
    codec,
    recordsPerSecond: result.records / (elapsed / 1000),
    senderNs: (elu.active * 1e6) / result.records,
    receiverNs: (result.activeMs * 1e6) / result.records,
  };
}

// ---- Main ------------------------------------------------------------------------------------

const SHAPES = ['bids', 'mix', 'window results', 'small numbers'];

/** `--codecs a,b` / `--shapes a,b`: run only those (for profiling one case). */
function only(flag: string, name: string): boolean {
  const i = process.argv.indexOf(flag);
  return i < 0 || process.argv[i + 1]!.split(',').includes(name);
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const rounds = arg('--rounds', 15);
  const seconds = arg('--seconds', 2);
  if (process.argv.includes('--child')) {
    // One shape in a fresh process: print its rows for the parent.
    process.stdout.write(JSON.stringify(inThread(rounds)));
    return;
  }
  console.log(
    `Node ${process.version}, msgpackr native acceleration: ${isNativeAccelerationEnabled ? 'ON (not what we mean to measure)' : 'off'}; ` +
      `batches of ${BATCH}, ${POOL} distinct batches per shape, ${rounds} rounds\n`,
  );
  let rows: Row[] = [];
  {
    // Each shape in a process of its own: what one shape's run leaves behind in V8 (type feedback,
    // maps, heap) changes the next shape's figures by up to 3× on this machine.
    for (const shape of SHAPES.filter((s) => only('--shapes', s))) {
      const args = process.argv.slice(2).filter((a, i, all) => a !== '--shapes' && all[i - 1] !== '--shapes');
      const child = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, ...args, '--shapes', shape, '--child'], {
        encoding: 'utf8',
        maxBuffer: 1 << 24,
      });
      if (child.status !== 0) throw new Error(`benchmark of ${shape} failed: ${child.stderr}`);
      rows = rows.concat(JSON.parse(child.stdout) as Row[]);
    }
  }
  console.log('| records | codec | encode ns/rec | decode ns/rec | total ns/rec | min–max over rounds | × structured clone | bytes/rec |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.shape} | ${r.codec} | ${r.encode.toFixed(0)} | ${r.decode.toFixed(0)} | **${r.total.toFixed(0)}** | ${r.min.toFixed(0)}–${r.max.toFixed(0)} | ${r.ratio.toFixed(2)} | ${r.bytes.toFixed(1)} |`,
    );
  }

  const reps = arg('--reps', 3);
  if (reps === 0) return;
  const crossCodecs = ['structured clone', 'msgpackr records', 'msgpackr sequential', 'columnar'];
  console.log(
    `\nTwo threads, NEXMark bids: ${seconds} s per codec after 0.5 s warm-up, ${WINDOW} messages in flight, ` +
      `${reps} repetitions (codecs interleaved); medians, min–max of records/s:\n`,
  );
  const data = makeData('bids');
  const runs = new Map<string, CrossResult[]>(crossCodecs.map((c) => [c, []]));
  const ratios = new Map<string, number[]>(crossCodecs.map((c) => [c, []]));
  for (let r = 0; r < reps; r++) {
    const base = await crossThread(crossCodecs[0]!, seconds, data);
    runs.get(crossCodecs[0]!)!.push(base);
    ratios.get(crossCodecs[0]!)!.push(1);
    for (const codec of crossCodecs.slice(1)) {
      const result = await crossThread(codec, seconds, data);
      runs.get(codec)!.push(result);
      ratios.get(codec)!.push(result.recordsPerSecond / base.recordsPerSecond);
    }
  }
  console.log('| codec | records/s | min–max | × structured clone | end to end ns/rec | sender busy ns/rec | receiver busy ns/rec |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const codec of crossCodecs) {
    const rs = runs.get(codec)!;
    const rate = median(rs.map((x) => x.recordsPerSecond));
    console.log(
      `| ${codec} | ${(rate / 1e6).toFixed(2)}M | ${(Math.min(...rs.map((x) => x.recordsPerSecond)) / 1e6).toFixed(2)}–` +
        `${(Math.max(...rs.map((x) => x.recordsPerSecond)) / 1e6).toFixed(2)}M | ${median(ratios.get(codec)!).toFixed(2)} | ` +
        `${(1e9 / rate).toFixed(0)} | ${median(rs.map((x) => x.senderNs)).toFixed(0)} | ${median(rs.map((x) => x.receiverNs)).toFixed(0)} |`,
    );
  }
}

if (isMainThread) await main();
else receiver();
