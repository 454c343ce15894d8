/**
 * `spate demo` as a user meets it: the real command (fleet of 200 simulated devices at 1 000
 * readings/s over HTTP, WebSocket and MQTT) on free ports, its printed dashboard opened in a real
 * browser (Debian's chromium driven by playwright-core): the page goes live, the job graph shows
 * the demo's steps, the counters and the throughput chart move, a live view's chart gets points,
 * the SQL panel answers from device_stats. `spate query` answers over the control socket and over
 * the dashboard while the job runs; after SIGTERM the process exits 0 and `spate query` reads the
 * DuckDB file itself.
 *
 * With SPATE_SCREENSHOT=docs/demo.png (a path from the repository root) it also writes a full-page
 * screenshot of the running demo's dashboard, 1 400 px wide.
 *
 * The browser is required (as in test/dashboard-browser.test.ts): without it this file fails.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiQuery, CHROMIUM, count, type DemoProcess, ROOT, spateQuery, startDemo, until } from '../support/demo.ts';

const SCREENSHOT = process.env['SPATE_SCREENSHOT'];
const root = mkdtempSync(join(tmpdir(), 'spate-demo-browser-'));
const dir = join(root, 'demo');

let demo: DemoProcess;
let browser: Browser;
let page: Page;
const problems: string[] = [];
/** device_stats rows seen while the job ran (the file holds at least as many after it stops). */
let runningCount = 0;
/** Points the device-stats chart had when first seen. */
let firstPoints = 0;
/** The event time (HH:MM:SS.mmm) of the newest device-stats record listed then. */
let firstTime = '';

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`the browser tests need Chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run does), or set SPATE_CHROMIUM`);
  }
  [demo, browser] = await Promise.all([startDemo(dir, ['--devices', '200', '--rate', '1000']), chromium.launch({ executablePath: CHROMIUM })]);
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  await page.goto(demo.url);
});

afterAll(async () => {
  await browser?.close();
  await demo?.kill();
  rmSync(root, { recursive: true, force: true });
});

/** A number shown in an element, thousands separators allowed. */
async function numberIn(selector: string): Promise<number> {
  const text = await page.locator(selector).first().textContent({ timeout: 5_000 });
  return Number((text ?? '').replace(/,/g, ''));
}

async function attr(selector: string, name: string): Promise<number> {
  return Number(await page.locator(selector).first().getAttribute(name, { timeout: 5_000 }));
}

/** The dead letters counted on the page's steps table, over all steps. */
/** The Late column of a step in the steps table. */
async function lateOnPage(step: string): Promise<number> {
  const text = await page.locator(`#steps-table td[data-counter="late"][data-step="${step}"]`).textContent();
  return Number((text ?? '0').replace(/,/g, ''));
}

async function deadLettersOnPage(): Promise<number> {
  const texts = await page.locator('#steps-table td[data-counter="dead-letters"]').allTextContents();
  return texts.reduce((n, t) => n + Number(t.replace(/,/g, '')), 0);
}

/** "N completed, M failed …" */
async function completedCheckpoints(): Promise<number> {
  const text = (await page.locator('#cp-totals').textContent()) ?? '';
  return Number(/^([\d,]+) completed/.exec(text)?.[1]?.replace(/,/g, '') ?? NaN);
}

const poll = { timeout: 30_000, interval: 250 };

describe('spate demo in a browser', () => {
  it('prints its dashboard, which goes live and shows the demo job graph', async () => {
    expect(demo.stdout()).toMatch(/Spate demo: street noise sensors — open http:\/\/127\.0\.0\.1:\d+\//);
    expect(demo.stdout()).toMatch(/200 simulated devices send 1000 readings\/s/);
    await page.locator('#live[data-state="live"]').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('#phase').textContent(), poll).toBe('running');
    expect(await page.locator('#title').textContent()).toBe('Spate demo: street noise sensors');
    // The demo's steps: three endpoints, their union and dedupe, the analytics, a sink per table, the views.
    for (const step of [
      'http', 'websocket', 'mqtt', 'union-1', 'dedupe', 'device-stats', 'device-p95', 'anomalies', 'region-activity', 'noisiest',
      'store-device-stats', 'store-device-p95', 'store-alerts', 'store-region-activity', 'store-noisiest', 'store-late-readings',
      'dead-letters', 'store-dead-letters', 'view-device-stats', 'view-active-devices-by-region',
    ]) {
      expect(await page.locator(`#graph-svg [data-step="${step}"]`).count(), step).toBe(1);
    }
    // Readings flow in over every protocol.
    for (const source of ['http', 'websocket', 'mqtt']) {
      await expect.poll(() => attr(`#graph-svg [data-step="${source}"]`, 'data-rate'), poll).toBeGreaterThan(20);
    }
    await expect.poll(() => attr('#graph-svg [data-step="dedupe"]', 'data-rate'), poll).toBeGreaterThan(100);
    expect(await page.locator('#views section.view').count()).toBe(4);
  });

  it('moves its counters and its throughput chart', async () => {
    await expect.poll(() => deadLettersOnPage(), poll).toBeGreaterThan(0);
    await expect.poll(() => completedCheckpoints(), poll).toBeGreaterThan(0);
    await expect.poll(() => attr('#throughput-chart', 'data-points'), poll).toBeGreaterThan(0);
    const [dead, checkpoints, points] = [await deadLettersOnPage(), await completedCheckpoints(), await attr('#throughput-chart', 'data-points')];
    // The fleet's faults (malformed and oversized messages) keep coming; checkpoints every 2 s; a throughput point a second.
    await expect.poll(() => deadLettersOnPage(), poll).toBeGreaterThan(dead);
    await expect.poll(() => completedCheckpoints(), poll).toBeGreaterThan(checkpoints);
    await expect.poll(() => attr('#throughput-chart', 'data-points'), poll).toBeGreaterThan(points);
    expect(await page.locator('#throughput-chart canvas').count()).toBeGreaterThan(0);
  });

  it('draws points on a live view chart', async () => {
    const chart = '#views .chart[data-view="device-stats"]';
    // The first 10 s windows close once the watermark (5 s behind the readings) passes their end.
    await expect.poll(() => attr(chart, 'data-points'), { timeout: 40_000, interval: 250 }).toBeGreaterThan(0);
    firstPoints = await attr(chart, 'data-points');
    expect(await page.locator(`${chart} canvas`).count()).toBe(1);
    // The x axis spans the windows seen (here one or two 10 s windows), not years around one point.
    await expect.poll(() => attr(chart, 'data-x-span'), poll).toBeGreaterThan(0);
    expect(await attr(chart, 'data-x-span')).toBeLessThanOrEqual(60);
    expect(await page.locator('#views section[data-view="device-stats"] table.latest tbody tr').count()).toBe(10);
    expect(await page.locator('#views section[data-view="device-stats"] table.latest tbody tr').first().getAttribute('data-key')).toMatch(/^sensor-\d{4}$/);
    firstTime = (await page.locator('#views section[data-view="device-stats"] table.latest tbody tr td').nth(1).textContent()) ?? '';
    expect(firstTime).toMatch(/^\d\d:\d\d:\d\d\.\d{3}$/);
  });

  it('counts late readings: the fleet holds some back 15–60 s, past their windows', async () => {
    // They correct their closed windows (allowed lateness 30 s): device-stats counts each.
    await expect.poll(() => lateOnPage('device-stats'), { timeout: 60_000, interval: 500 }).toBeGreaterThan(0);
    const late = await lateOnPage('device-stats');
    await expect.poll(() => lateOnPage('device-stats'), { timeout: 30_000, interval: 500 }).toBeGreaterThan(late);
  });

  it('answers SQL on device_stats in its query panel', async () => {
    await page.locator('#query').waitFor({ state: 'visible' });
    const sql = 'SELECT device, region, readings, avg_db FROM device_stats ORDER BY window_end DESC, device LIMIT 5';
    await page.locator('#query-sql').fill(sql);
    // The table fills at the first committed checkpoint after a window closed: ask until it has rows.
    await until('rows of device_stats in the query panel', async () => {
      await page.locator('#query-form button[type="submit"]').click();
      await page.waitForTimeout(300);
      return (await page.locator('#query-table tbody tr').count()) > 0;
    }, 30_000, 500);
    expect(await page.locator('#query-table thead th').allTextContents()).toEqual(['device', 'region', 'readings', 'avg_db']);
    expect(await page.locator('#query-table tbody tr').count()).toBe(5);
    const cells = await page.locator('#query-table tbody tr').first().locator('td').allTextContents();
    expect(cells[0]).toMatch(/^sensor-\d{4}$/);
    expect(['north', 'south', 'east', 'west', 'centre']).toContain(cells[1]);
    expect(Number(cells[2])).toBeGreaterThan(0);
    expect(Number(cells[3])).toBeGreaterThan(0);
    expect(await page.locator('#query-error').isHidden()).toBe(true);
    // The same table through the API.
    const { rows } = await apiQuery(demo.url, 'SELECT count(*) AS n FROM device_stats');
    runningCount = count(rows);
    expect(runningCount).toBeGreaterThan(0);
  });

  it('answers `spate query` over its control socket and over the dashboard', async () => {
    const sql = 'SELECT count(*) AS n FROM device_stats';
    const [control, http] = await Promise.all([spateQuery(sql, ['--dir', dir]), spateQuery(sql, ['--url', demo.url])]);
    expect(count(control)).toBeGreaterThanOrEqual(runningCount);
    expect(count(http)).toBeGreaterThanOrEqual(runningCount);
    runningCount = Math.max(count(control), count(http));
  });

  it('keeps receiving view updates, without errors on the page, and writes a screenshot', async () => {
    // More windows close (every device's, every 10 s) and late readings correct closed ones.
    await expect.poll(() => attr('#views .chart[data-view="device-stats"]', 'data-points'), { timeout: 30_000, interval: 250 }).toBeGreaterThan(firstPoints);
    expect(problems).toEqual([]);
    // A test artifact every run (test-artifacts/, ignored by git)...
    const artifact = resolve(ROOT, 'test-artifacts', 'demo.png');
    mkdirSync(dirname(artifact), { recursive: true });
    await page.screenshot({ path: artifact, fullPage: true });
    expect(statSync(artifact).size).toBeGreaterThan(10_000);
    // ...and, when asked, the README's picture.
    if (SCREENSHOT !== undefined && SCREENSHOT !== '') {
      // Charts of views with one window only have a single x value (uPlot then spans years):
      // wait for the next windows (10 s later), then scroll to the top.
      await expect.poll(async () => (await page.locator('#views section[data-view="device-stats"] table.latest tbody tr td').nth(1).textContent()) ?? '', { timeout: 30_000, interval: 250 }).toSatisfy((t: string) => t > firstTime);
      const path = resolve(ROOT, SCREENSHOT);
      mkdirSync(dirname(path), { recursive: true });
      await page.evaluate('window.scrollTo(0, 0)');
      await page.screenshot({ path, fullPage: true });
      expect(statSync(path).size).toBeGreaterThan(10_000);
    }
  });

  it('exits 0 on SIGTERM, and `spate query` then reads the DuckDB file itself', async () => {
    const { code, signal } = await demo.stop();
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(demo.stderr()).toMatch(/SIGTERM: taking a final checkpoint and stopping/);
    expect(existsSync(join(dir, 'results.duckdb'))).toBe(true);
    const rows = await spateQuery('SELECT count(*) AS n, count(DISTINCT device) AS devices FROM device_stats', ['--dir', dir]);
    expect(count(rows)).toBeGreaterThanOrEqual(runningCount);
    expect(count(rows, 'devices')).toBeGreaterThan(100);
  });
});
