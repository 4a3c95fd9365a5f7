// Drives `flow serve`'s page in headless Chromium (Debian's) through
// Playwright's library, and prints what it saw as one JSON line.
//
//   node page.cjs run      FLOW_URL, FLOW_KEY (run scope), FLOW_READ_KEY, SCREENSHOT
//   node page.cjs fail     FLOW_URL, FLOW_KEY: a run that fails, its diagnostic; a run cancelled
//   node page.cjs follow   FLOW_URL, FLOW_KEY: a run started elsewhere, followed
//   node page.cjs measure  FLOW_URL, FLOW_KEY, SCREENSHOT: a large DAG, panned and zoomed
'use strict';
const path = require('path');
const { chromium } = require(path.join(process.env.FLOW_NODE_MODULES, 'playwright-core'));

const mode = process.argv[2];

async function login(page, key) {
  const started = Date.now();
  await page.goto(process.env.FLOW_URL);
  await page.fill('#key', key);
  await page.click('#key-form button');
  await page.waitForSelector('body[data-graph="ready"]', { timeout: 60000 });
  return Date.now() - started;
}

// Intervals between painted frames while `gesture` runs.
async function frames(page, gesture) {
  await page.evaluate(() => {
    window.painted = [];
    window.painting = true;
    const tick = (at) => { window.painted.push(at); if (window.painting) requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  });
  await gesture();
  return page.evaluate(() => {
    window.painting = false;
    const at = window.painted;
    return at.slice(1).map((t, i) => t - at[i]);
  });
}

function summary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] || 0;
  return { count: sorted.length, median: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1] || 0 };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const result = { errors };
  if (mode === 'run') {
    // A read key sees the flow but is offered no start button.
    await login(page, process.env.FLOW_READ_KEY);
    result.readScope = await page.getAttribute('body', 'data-scope');
    result.readCanStart = await page.isVisible('#start');
    await page.evaluate(() => sessionStorage.clear());
    result.interactiveMs = await login(page, process.env.FLOW_KEY);
    result.nodes = Number(await page.getAttribute('body', 'data-nodes'));
    result.canStart = await page.isVisible('#start');
    await page.click('#start');
    await page.waitForSelector('body[data-run-status="running"]', { timeout: 60000 });
    result.sawRunning = true;
    await page.waitForSelector(
      'body[data-run-status="succeeded"], body[data-run-status="failed"], body[data-run-status="cancelled"]',
      { timeout: 300000 },
    );
    result.status = await page.getAttribute('body', 'data-run-status');
    result.bars = await page.$$eval('#timeline .row', (rows) => rows.map((r) => ({
      step: r.dataset.step,
      status: r.dataset.status,
      bar: !!r.querySelector('.bar'),
      text: r.querySelector('.bar') ? r.querySelector('.bar').textContent : '',
    })));
    result.head = await page.textContent('#run-head');
    result.runs = await page.$$eval('#runs li', (items) => items.map((i) => i.dataset.status));
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  } else if (mode === 'fail') {
    await login(page, process.env.FLOW_KEY);
    await page.click('#start');
    await page.waitForSelector('body[data-run-status="failed"]', { timeout: 120000 });
    result.status = 'failed';
    result.diagnostics = await page.$$eval('#diagnostics details', (items) => items.map((d) => d.textContent));
    result.bars = await page.$$eval('#timeline .row', (rows) => rows.map((r) => r.dataset.status));
    // The manual group's slow step, started and cancelled from the page.
    await page.selectOption('#group', 'manual');
    await page.click('#start');
    await page.waitForSelector('body[data-run-status="running"]', { timeout: 60000 });
    await page.waitForSelector('#cancel', { state: 'visible', timeout: 60000 });
    await page.click('#cancel');
    await page.waitForSelector('body[data-run-status="cancelled"]', { timeout: 60000 });
    result.cancelled = true;
    result.cancelVisibleAfter = await page.isVisible('#cancel');
  } else if (mode === 'follow') {
    // A run another process started, followed to its end.
    await login(page, process.env.FLOW_KEY);
    await page.waitForSelector('#runs li[data-status="running"] button', { timeout: 60000 });
    await page.click('#runs li[data-status="running"] button');
    await page.waitForSelector('body[data-run-status="running"]', { timeout: 60000 });
    await page.waitForSelector('body[data-run-status="succeeded"]', { timeout: 60000 });
    result.status = 'succeeded';
    result.runs = await page.$$eval('#runs li', (items) => items.map((i) => i.dataset.status));
  } else if (mode === 'measure') {
    result.interactiveMs = await login(page, process.env.FLOW_KEY);
    result.nodes = Number(await page.getAttribute('body', 'data-nodes'));
    result.stats = await page.evaluate(() => ({
      layoutFetchMs: window.flowStats.layoutFetchMs,
      graphReadyMs: window.flowStats.graphReadyMs,
    }));
    result.drawnAtFirst = await page.evaluate(() => window.flowStats.lastDrawn);
    await page.screenshot({ path: process.env.SCREENSHOT });
    // Zoomed and dragged where steps are: the middle of the graph's top row.
    const box = await page.locator('#graph').boundingBox();
    const view = await page.evaluate(() => window.flowStats.view);
    const cx = box.x + box.width / 2, cy = box.y + view.y + 4;
    await page.mouse.move(cx, cy);
    const intervals = await frames(page, async () => {
      for (let i = 0; i < 25; i += 1) { await page.mouse.wheel(0, -150); await page.waitForTimeout(16); }
      await page.mouse.down();
      for (let i = 0; i < 40; i += 1) { await page.mouse.move(cx - i * 15, cy + i * 2); await page.waitForTimeout(16); }
      await page.mouse.up();
      for (let i = 0; i < 25; i += 1) { await page.mouse.wheel(0, 150); await page.waitForTimeout(16); }
    });
    result.frameIntervalsMs = summary(intervals);
    result.drawMs = summary(await page.evaluate(() => window.flowStats.frames));
    result.drawnAtLast = await page.evaluate(() => window.flowStats.lastDrawn);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  await browser.close();
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
