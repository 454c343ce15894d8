import { parseArgs } from 'node:util';
import { Pipeline } from '../api/pipeline.ts';
import { CallbackSink } from '../connectors/memory/sink.ts';
import type { Q4Row, Q5Row, Q7Row, Q11Row } from '../nexmark/model.ts';
import { q4, q5, q7, q11 } from '../nexmark/queries.ts';
import { NexmarkSource } from '../nexmark/source.ts';
import { numericArg, onStopSignal } from './args.ts';

const money = (cents: number): string =>
  `$${(cents / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const clock = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

/**
 * `spate demo` (what `npm start` runs): a live auction site. A NEXMark generator produces people,
 * auctions and bids in real time; one job answers four questions continuously — the hottest
 * auctions (sliding windows), the highest bids (tumbling windows), bidder sessions (session
 * windows) and average closing prices per category (a join with timers, then a running
 * aggregate) — and prints what it finds every two seconds.
 */
export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { seconds: { type: 'string' }, rate: { type: 'string' } } });
  // setTimeout fires at once for delays beyond 2^31 - 1 ms (24.8 days): refuse those.
  const seconds = numericArg('seconds', values.seconds, 20, { min: 0, max: 2_147_483, hint: '0: run until stopped' });
  const rate = numericArg('rate', values.rate, 20_000, { min: 0, exclusiveMin: true, hint: 'events per second' });

  const p = new Pipeline();
  const start = Date.now();
  const events = p.source(() => new NexmarkSource({ rate, baseTime: start, live: true, seed: 7 }), {
    id: 'auction-events',
    idleTimeout: 0,
  });

  let hot: Q5Row[] = [];
  let highest: Q7Row[] = [];
  const categories = new Map<number, number>();
  let sessions = 0;
  let sessionBids = 0;
  let longest: Q11Row | null = null;
  q5(events).sink(new CallbackSink<Q5Row>((r) => {
    if (hot.length > 0 && hot[0]!.window_end !== r.window_end) hot = [];
    hot.push(r);
  }));
  q7(events).sink(new CallbackSink<Q7Row>((r) => {
    if (highest.length > 0 && Math.floor(highest[0]!.dateTime / 10_000) !== Math.floor(r.dateTime / 10_000)) highest = [];
    highest.push(r);
  }));
  q11(events).sink(new CallbackSink<Q11Row>((r) => {
    sessions++;
    sessionBids += r.bid_count;
    if (longest === null || r.bid_count > longest.bid_count) longest = r;
  }));
  q4(events).sink(new CallbackSink<Q4Row>((r) => categories.set(r.category, r.avg)));

  process.stdout.write(
    `Spate demo: a live auction site, ${rate.toLocaleString('en-US')} events/s of people, auctions and bids.\n` +
      `One job, four continuous queries; ${seconds > 0 ? `stops after ${seconds} s` : 'runs until Ctrl-C or SIGTERM'} (--seconds N, --rate R).\n\n`,
  );
  const job = p.start();
  let last = { time: Date.now(), events: 0 };
  const report = (): void => {
    const metrics = job.job.metrics();
    const source = metrics.find((m) => m.step === 'auction-events')!;
    const now = Date.now();
    const perSecond = ((source.recordsOut - last.events) * 1000) / Math.max(1, now - last.time);
    last = { time: now, events: source.recordsOut };
    const late = metrics.reduce((n, m) => n + m.lateRecords, 0);
    const lines = [
      `[${clock(now)}] ${source.recordsOut.toLocaleString('en-US')} events (${Math.round(perSecond).toLocaleString('en-US')}/s), ` +
        `watermark lag ${Number.isFinite(source.watermark) ? now - source.watermark : '-'} ms, late ${late}, dead letters ${job.job.deadLetterCount()}`,
    ];
    const h = hot[0];
    if (h !== undefined) {
      lines.push(
        `  hottest auction ${clock(h.window_start)}–${clock(h.window_end)}: ${hot.map((r) => `#${r.auction}`).join(', ')} with ${h.num.toLocaleString('en-US')} bids`,
      );
    }
    const b = highest[0];
    if (b !== undefined) lines.push(`  highest bid in the last 10 s window: ${money(b.price)} by bidder ${b.bidder} on auction #${b.auction}`);
    if (categories.size > 0) {
      const avg = [...categories].sort((x, y) => x[0] - y[0]).map(([c, v]) => `${c}: ${money(v)}`);
      lines.push(`  average winning bid by category: ${avg.join('  ')}`);
    }
    if (sessions > 0) {
      lines.push(
        `  bidder sessions closed: ${sessions.toLocaleString('en-US')}, ${(sessionBids / sessions).toFixed(1)} bids on average, longest ${longest!.bid_count} bids by bidder ${longest!.bidder}`,
      );
    }
    process.stdout.write(lines.join('\n') + '\n\n');
  };
  const timer = setInterval(report, 2000);
  let stopped: NodeJS.Signals | undefined;
  // SIGTERM (a service manager, `kill`, a container stop) ends the demo as cleanly as Ctrl-C.
  const removeHandlers = onStopSignal((signal) => {
    stopped ??= signal;
    void job.stop();
  });
  const deadline = seconds > 0 ? setTimeout(() => void job.stop(), seconds * 1000) : null;
  let result;
  try {
    result = await job.done;
  } finally {
    clearInterval(timer);
    if (deadline !== null) clearTimeout(deadline);
    removeHandlers();
  }
  report();
  const steps = result.metrics.filter((m) => m.kind !== 'sink');
  process.stdout.write(
    `Done in ${(result.durationMs / 1000).toFixed(1)} s${stopped === undefined ? '' : ` (stopped by ${stopped})`}. Per step (records in → out):\n` +
      steps.map((m) => `  ${m.step.padEnd(22)} ${m.kind.padEnd(16)} ${String(m.recordsIn).padStart(10)} → ${m.recordsOut}`).join('\n') +
      '\n',
  );
  return 0;
}
