/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core): a live pipeline
 * with dead letters and late data, its page loaded as a user would — the graph shows rates, the
 * charts receive points, the dead-letter and late counters move, the latest dead letters and
 * checkpoints are listed, "why hasn't my window fired" names an input, a key is looked up with
 * the keyboard — and a screenshot is written to test-artifacts/dashboard.png.
 *
 * The browser is required (`.ci/run` installs chromium when it is missing): without it this file
 * fails, it does not skip. SPATE_CHROMIUM names another binary.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningJob } from '../src/index.ts';
import { type Dashboard, serveDashboard } from '../src/ui/dashboard.ts';
import { sensorPipeline } from './fixtures/sensor-pipeline.ts';

const CHROMIUM = process.env['SPATE_CHROMIUM'] ?? '/usr/bin/chromium';
const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts');
const dir = mkdtempSync(join(tmpdir(), 'spate-browser-'));

let running: RunningJob;
let dashboard: Dashboard;
let browser: Browser;
let page: Page;
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`the browser tests need Chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run does), or set SPATE_CHROMIUM`);
  }
  running = sensorPipeline({ rate: 200, checkpointDir: join(dir, 'checkpoints'), checkpointInterval: 500 }).start({ parallelism: 2 });
  dashboard = await serveDashboard(running, { port: 0, title: 'sensors' });
  browser = await chromium.launch({ executablePath: CHROMIUM });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  await page.goto(dashboard.url);
});

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A number shown in an element, thousands separators allowed. */
async function numberIn(selector: string): Promise<number> {
  const text = await page.locator(selector).first().textContent();
  return Number((text ?? '').replace(/,/g, ''));
}

async function attr(selector: string, name: string): Promise<number> {
  return Number(await page.locator(selector).first().getAttribute(name));
}

describe('the dashboard in a browser', () => {
  it('goes live and shows non-zero rates in the job graph', async () => {
    await page.locator('#live[data-state="live"]').waitFor();
    await expect.poll(() => page.locator('#phase').textContent()).toBe('running');
    await expect.poll(() => attr('#graph-svg [data-step="readings"]', 'data-rate'), { timeout: 15_000 }).toBeGreaterThan(50);
    await expect.poll(() => attr('#graph-svg [data-step="per-second"]', 'data-rate'), { timeout: 15_000 }).toBeGreaterThan(0);
    // Tasks, exchanges labelled with how they ship, steps focusable with a description.
    expect(await page.locator('#graph-svg .task').count()).toBeGreaterThanOrEqual(8);
    expect(await page.locator('#graph-svg .edge-label', { hasText: 'hash · pre-agg' }).count()).toBe(1);
    const node = page.locator('#graph-svg [data-step="per-second"]');
    expect(await node.getAttribute('tabindex')).toBe('0');
    expect(await node.getAttribute('aria-label')).toMatch(/per-second \(tumbling-window, ×2\): .*\/s in/);
  });

  it('moves the dead-letter and late counters and lists the latest dead letters', async () => {
    const dead = '#steps-table td[data-counter="dead-letters"][data-step="validate"]';
    const late = '#steps-table td[data-counter="late"][data-step="per-second"]';
    await expect.poll(() => numberIn(dead), { timeout: 15_000 }).toBeGreaterThan(0);
    await expect.poll(() => numberIn(late), { timeout: 15_000 }).toBeGreaterThan(0);
    const [dead0, late0] = [await numberIn(dead), await numberIn(late)];
    await expect.poll(() => numberIn(dead), { timeout: 15_000 }).toBeGreaterThan(dead0);
    await expect.poll(() => numberIn(late), { timeout: 15_000 }).toBeGreaterThan(late0);
    const first = page.locator('#dl-table tbody tr').first();
    await first.waitFor();
    expect(await first.getAttribute('data-step')).toBe('validate');
    expect(await first.textContent()).toMatch(/temperature sensor fault.*"device":"sensor-\d"/);
    expect(await page.locator('#dl-empty').isHidden()).toBe(true);
  });

  it('receives new points on the charts of views and throughput', async () => {
    const chart = '#views .chart[data-view="temperatures"]';
    await expect.poll(() => attr(chart, 'data-points'), { timeout: 15_000 }).toBeGreaterThan(0);
    const before = await attr(chart, 'data-points');
    // (A string: this project's TypeScript has no DOM types.)
    const update = (await page.evaluate(`new Promise((resolve) => document.addEventListener('spate:view-update', (e) => resolve({ view: e.detail.view, entries: e.detail.entries.length }), { once: true }))`)) as { view: string; entries: number };
    expect(update.view).toBe('temperatures');
    expect(update.entries).toBeGreaterThan(0);
    await expect.poll(() => attr(chart, 'data-points'), { timeout: 15_000 }).toBeGreaterThan(before);
    expect(await page.locator(`${chart} canvas`).count()).toBe(1);
    expect(await page.locator('#views section[data-view="temperatures"] table.latest tbody tr').count()).toBe(6);
    const throughput = await attr('#throughput-chart', 'data-points');
    await expect.poll(() => attr('#throughput-chart', 'data-points'), { timeout: 15_000 }).toBeGreaterThan(throughput);
  });

  it('lists checkpoints with their phases and explains why the window has not fired', async () => {
    await expect.poll(() => page.locator('#cp-table tbody tr.completed').count(), { timeout: 15_000 }).toBeGreaterThan(0);
    const row = page.locator('#cp-table tbody tr.completed').first();
    expect(await row.locator('td').nth(2).textContent()).toBe('completed');
    expect(await row.locator('td').nth(4).textContent()).toMatch(/\d+ ms|s$/);
    expect(await page.locator('#cp-totals').textContent()).toMatch(/\d+ completed, 0 failed/);
    const hold = page.locator('#holds-list li[data-step="per-second"]');
    await hold.first().waitFor({ timeout: 15_000 });
    expect(await hold.first().textContent()).toMatch(/per-second #\d fires at .*Input from .* #\d .*Origin: .*(readings|stragglers) #\d/s);
  });

  it('looks a key up with the keyboard, then writes a screenshot', async () => {
    const input = page.locator('#views [data-view="temperatures"] input[type="text"]');
    await input.focus();
    await page.keyboard.type('sensor-1');
    await page.keyboard.press('Enter');
    const answer = page.locator('#views [data-view="temperatures"] pre');
    await expect.poll(() => answer.textContent()).toMatch(/"device": "sensor-1"/);
    expect(problems).toEqual([]);
    await input.fill('nobody');
    await page.keyboard.press('Enter');
    await expect.poll(() => answer.textContent()).toMatch(/^404: no key 'nobody' in view 'temperatures'/);
    // The browser logs the 404 it was just given; nothing else.
    expect(problems).toEqual(['console error: Failed to load resource: the server responded with a status of 404 (Not Found)']);
    await page.evaluate('window.scrollTo(0, 0)');
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path, fullPage: true });
    expect(existsSync(path)).toBe(true);
  });
});
