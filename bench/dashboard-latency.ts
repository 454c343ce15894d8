/**
 * Dashboard update latency: the time from a record entering the pipeline (its source generates
 * it, stamping the wall clock) to its view update being rendered in a browser (Debian's Chromium
 * via playwright-core, the dashboard page as a user opens it: the update has travelled through
 * the view, the dashboard's push over server-sent events, and the page's chart and table, drawn
 * in the next animation frame). The page dispatches `spate:view-update` once it has drawn an
 * update; the browser's and this process's clocks are the same machine's.
 *
 * A view keeps the latest record per key, and the dashboard pushes each view at most once per
 * `viewPushIntervalMs` (50 ms by default): at high rates most records are superseded before they
 * are pushed. Every pushed entry is measured.
 *
 * `npx tsx bench/dashboard-latency.ts [--seconds S] [--rates 100,1000,10000] [--workers]
 * [--push-intervals 50,0]` prints a markdown table (p50, p95, p99, max in ms). `--workers` also
 * runs each rate with the pipeline in two worker threads (the view stays in the main thread, as
 * in `spate run`); `--push-intervals` the dashboard's `viewPushIntervalMs` values to try.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { buildPipeline } from '../src/api/define-pipeline.ts';
import { serveDashboard } from '../src/ui/dashboard.ts';
import module from './fixtures/latency-pipeline.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string' }, rates: { type: 'string' }, workers: { type: 'boolean' }, 'push-intervals': { type: 'string' } } });
const seconds = Number(values.seconds ?? 10);
const rates = (values.rates ?? '100,1000,10000').split(',').map(Number);
const pushIntervals = (values['push-intervals'] ?? '50').split(',').map(Number);
const CHROMIUM = process.env['SPATE_CHROMIUM'] ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) throw new Error(`needs Chromium at ${CHROMIUM} (apt-get install -y chromium)`);
const moduleUrl = new URL('./fixtures/latency-pipeline.ts', import.meta.url).href;

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(rate: number, workers: boolean, pushInterval: number): Promise<number[]> {
  const args = [String(rate), '10'];
  const p = await buildPipeline(module, args);
  const running = p.start(workers ? { parallelism: 2, workers: { module: moduleUrl, args } } : {});
  const dashboard = await serveDashboard(running, { port: 0, viewPushIntervalMs: pushInterval });
  const browser = await chromium.launch({ executablePath: CHROMIUM });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(dashboard.url);
    await page.locator('#live[data-state="live"]').waitFor();
    // Warm up (JIT, first chart), then measure.
    await page.waitForTimeout(2000);
    await page.evaluate(`window.__latencies = []; document.addEventListener('spate:view-update', (e) => { const now = Date.now(); for (const entry of e.detail.entries) window.__latencies.push(now - entry.value.sentAt); });`);
    await page.waitForTimeout(seconds * 1000);
    return ((await page.evaluate('window.__latencies')) as number[]).sort((a, b) => a - b);
  } finally {
    await browser.close();
    await dashboard.close();
    await running.stop({ checkpoint: false });
  }
}

const rows: string[] = [];
for (const pushInterval of pushIntervals) {
  for (const workers of values.workers ? [false, true] : [false]) {
    for (const rate of rates) {
      const l = await measure(rate, workers, pushInterval);
      const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : '—');
      rows.push(`| ${rate.toLocaleString('en-US')} | ${workers ? '2 workers' : 'one thread'} | ${pushInterval} | ${l.length} | ${f(quantile(l, 0.5))} | ${f(quantile(l, 0.95))} | ${f(quantile(l, 0.99))} | ${f(l.at(-1) ?? NaN)} |`);
      process.stderr.write(`${rows.at(-1)}\n`);
    }
  }
}
process.stdout.write(
  `Dashboard update latency: record generated → view update drawn in Chromium (ms), ${seconds} s per row\n\n` +
    `| records/s | pipeline | push interval (ms) | updates | p50 | p95 | p99 | max |\n|---:|---|---:|---:|---:|---:|---:|---:|\n${rows.join('\n')}\n`,
);
