// Drives headless Chromium (playwright-core) against a running ccm-webrtc-demo:
//   node browser_check.mjs --url http://127.0.0.1:P/ --codec av1 --width 320 --height 240
//        [--frames 60] [--timeout 40] [--viewers 1] [--reload] [--malformed] [--watch S]
//        [--schedule "T=shell command;T=shell command"] [--final-size WxH [--final-fps F]]
//        [--expect-pli] [--expect-error TEXT]
// Prints one JSON line per check and exits 0 when every viewer decoded enough
// frames of the right codec at the size sent. --watch S samples the stats every
// 250 ms for S seconds after that and prints them as JSON lines; --schedule runs
// shell commands at T seconds into the watch (the shaped-link test changes the link).
// --expect-error TEXT: the sender cannot build its pipeline; the page must show its
// error (containing TEXT) instead of decoding.
import { execSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
  return acc;
}, []));
const require = createRequire(process.env.PLAYWRIGHT_CORE_DIR ? join(resolve(process.env.PLAYWRIGHT_CORE_DIR), 'x.js') : import.meta.url);
const { chromium } = require('playwright-core');

const url = args.url;
const mime = { av1: 'video/AV1', vp9: 'video/VP9', h264: 'video/H264', h265: 'video/H265' }[args.codec];
const wantFrames = Number(args.frames || 60);
const timeoutMs = Number(args.timeout || 40) * 1000;
const viewers = Number(args.viewers || 1);
const width = Number(args.width), height = Number(args.height);
const log = (o) => console.log(JSON.stringify(o));

const userDataDir = mkdtempSync(join(tmpdir(), 'ccm-chromium-'));
// The fresh --user-data-dir is playwright's userDataDir (it refuses the flag itself).
const browserArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  // Host candidates as plain addresses (not mDNS names libnice cannot resolve).
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required'];

async function waitDecoded(page, label, minFrames) {
  const deadline = Date.now() + timeoutMs;
  let s = null;
  while (Date.now() < deadline) {
    s = await page.evaluate(() => window.ccmReceiverStats ? window.ccmReceiverStats() : null).catch(() => null);
    if (s && s.framesDecoded >= minFrames && s.frameWidth) return s;
    await new Promise((r) => setTimeout(r, 250));
  }
  log({ check: label, ok: false, why: 'timeout', stats: s });
  return null;
}

let ok = true;
let browser;
try {
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: browserArgs, timeout: 60000 });
  const context = browser;
  const pages = [];
  for (let i = 0; i < viewers; i++) {
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') log({ console: m.text() }); });
    await page.goto(url);
    pages.push(page);
  }
  const check = async (page, label) => {
    const s = await waitDecoded(page, label, wantFrames);
    if (!s) return false;
    const good = s.codec.toLowerCase() === mime.toLowerCase() && s.frameWidth === width && s.frameHeight === height;
    log({ check: label, ok: good, framesDecoded: s.framesDecoded, frameWidth: s.frameWidth,
          frameHeight: s.frameHeight, codec: s.codec, latencyMs: s.latencyMs,
          jitterBufferDelayMs: s.jitterBufferDelayMs, framesDropped: s.framesDropped,
          encoder: s.sender.encoder, keyUnitRequests: s.sender.keyUnitRequests, pliCount: s.pliCount });
    // A PLI/FIR the browser sent must have reached the encoder as force-key-unit
    // (sender figures lag by up to half a second).
    if (good && s.pliCount + s.firCount > 0) {
      let requests = s.sender.keyUnitRequests || 0;
      for (let i = 0; i < 20 && requests < 1; i++) {
        await new Promise((r) => setTimeout(r, 250));
        requests = (await page.evaluate(() => window.ccmReceiverStats())).sender.keyUnitRequests || 0;
      }
      log({ check: `${label}-pli-reached-encoder`, ok: requests >= 1, pli: s.pliCount, fir: s.firCount,
            keyUnitRequests: requests });
      return requests >= 1;
    }
    return good;
  };
  if (args['expect-error']) {
    // The sender's {"type":"error"} must reach the page and be shown there (bounded wait).
    const deadline = Date.now() + timeoutMs;
    let shown = null;
    while (!shown && Date.now() < deadline) {
      shown = await pages[0].evaluate(() => {
        const e = document.getElementById('error');
        return e && !e.hidden && e.textContent ? e.textContent : null;
      }).catch(() => null);
      if (!shown) await new Promise((r) => setTimeout(r, 250));
    }
    const state = await pages[0].evaluate(() => document.getElementById('state').textContent).catch(() => null);
    const good = !!shown && shown.includes(args['expect-error']) && state === 'error';
    log({ check: 'error-shown', ok: good, shown, state,
          why: shown ? undefined : `no error on the page within ${timeoutMs / 1000} s` });
    ok = good;
  } else {
    for (let i = 0; i < pages.length; i++) ok = (await check(pages[i], `viewer${i}`)) && ok;
  }
  if (args['expect-switch'] === 'true') {
    // The sender switches encoder mid-stream (ccm-webrtc-demo --switch-to): the page
    // must learn of it (ccmencbin's switch count in the sender's stats; under a slow
    // build the switch can come before the page first decoded, so the encoder's name
    // alone would not show it) and keep decoding across the change of parameter sets
    // (60 more frames after the switch is seen, within 20 s, none lost to an error).
    const first = await pages[0].evaluate(() => window.ccmReceiverStats());
    const deadline = Date.now() + 20000;
    let s = first;
    const seen = (x) => (x.sender.encoderSwitches || 0) >= 1;
    while (!seen(s) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      s = await pages[0].evaluate(() => window.ccmReceiverStats());
    }
    const switched = seen(s);
    const at = s.framesDecoded;
    while (switched && s.framesDecoded < at + 60 && Date.now() < deadline + 20000) {
      await new Promise((r) => setTimeout(r, 250));
      s = await pages[0].evaluate(() => window.ccmReceiverStats());
    }
    const renamed = !args['switch-to'] || s.sender.encoder === args['switch-to'];
    const good = switched && renamed && s.framesDecoded >= at + 60 &&
                 s.codec.toLowerCase() === mime.toLowerCase();
    log({ check: 'switch-kept-decoding', ok: good, firstSeen: first.sender.encoder, to: s.sender.encoder,
          switches: s.sender.encoderSwitches, framesAtSwitch: at, framesDecoded: s.framesDecoded,
          keyFramesDecoded: s.keyFramesDecoded, framesDropped: s.framesDropped,
          why: !switched ? 'the sender reported no encoder switch within 20 s'
             : !renamed ? `the sender names ${s.sender.encoder}, not ${args['switch-to']}` : undefined });
    ok = ok && good;
  }
  if (args['expect-pli'] === 'true') {
    // The sender hid its key frames: decoding at all means a PLI/FIR went back and
    // reached the encoder as a force-key-unit event.
    const s = await pages[0].evaluate(() => window.ccmReceiverStats());
    const good = s.pliCount + s.firCount >= 1 && (s.sender.keyUnitRequests || 0) >= 1;
    log({ check: 'pli-needed-and-answered', ok: good, pli: s.pliCount, fir: s.firCount,
          keyUnitRequests: s.sender.keyUnitRequests, keyFramesDecoded: s.keyFramesDecoded });
    ok = ok && good;
  }

  if (args.malformed === 'true') {
    // Garbage on a signalling socket of its own: the server drops that socket only.
    const result = await pages[0].evaluate(async () => {
      const ws = new WebSocket(`ws://${location.host}/ws`);
      await new Promise((r) => { ws.onopen = r; });
      for (const m of ['{not json', '[1,2]', '{"type":"answer"}', '{"type":"ice","candidate":5}', '{"type":"bogus"}'])
        ws.send(m);
      return await new Promise((r) => { ws.onclose = (e) => r(e.code); setTimeout(() => r("open"), 20000); });
    });
    log({ check: 'malformed-closed', ok: result !== 'open', closeCode: result });
    ok = ok && result !== 'open';
  }
  if (args.reload === 'true') {
    // Reload mid-stream: the old viewer's pipeline goes, a new one comes; the others keep playing.
    const before = pages.length > 1 ? await pages[1].evaluate(() => window.ccmReceiverStats()) : null;
    await pages[0].reload();
    ok = (await check(pages[0], 'viewer0-after-reload')) && ok;
    if (before) {
      const after = await pages[1].evaluate(() => window.ccmReceiverStats());
      const going = after.framesDecoded > before.framesDecoded + 30;
      log({ check: 'viewer1-kept-playing', ok: going, before: before.framesDecoded, after: after.framesDecoded });
      ok = ok && going;
    }
  }
  if (args.watch) {
    const until = Date.now() + Number(args.watch) * 1000;
    const t0 = Date.now();
    let last = null;
    const schedule = (args.schedule || '').split(';').filter(Boolean).map((item) => {
      const at = item.indexOf('=');
      return { t: Number(item.slice(0, at)), command: item.slice(at + 1), done: false };
    });
    while (Date.now() < until) {
      const t = (Date.now() - t0) / 1000;
      for (const step of schedule) {
        if (!step.done && t >= step.t) {
          step.done = true;
          try { execSync(step.command, { stdio: 'inherit' }); log({ event: step.command, t }); }
          catch (e) { log({ event: step.command, t, failed: String(e) }); ok = false; }
        }
      }
      const s = await pages[0].evaluate(() => window.ccmReceiverStats());
      log({ sample: t, ...s });
      last = s;
      await new Promise((r) => setTimeout(r, 250));
    }
    // --final-size WxH [--final-fps F]: what the browser shows at the end of the watch
    // (the sender stepped resolution / frame rate down meanwhile).
    // Chromium's framesPerSecond trails a change by a second or two, and a slow
    // (sanitizer) sender steps later: wait up to 15 s more for it.
    if (args['final-size'] && last) {
      const [fw, fh] = args['final-size'].split('x').map(Number);
      const reached = (x) => x.frameWidth === fw && x.frameHeight === fh &&
        (!args['final-fps'] || Math.abs(x.framesPerSecond - Number(args['final-fps'])) <= 3);
      for (let i = 0; i < 60 && !reached(last); i++) {
        await new Promise((r) => setTimeout(r, 250));
        last = await pages[0].evaluate(() => window.ccmReceiverStats());
      }
      const good = reached(last);
      log({ check: 'final-size', ok: good, frameWidth: last.frameWidth, frameHeight: last.frameHeight,
            framesPerSecond: last.framesPerSecond, step: last.sender.resolutionStep });
      ok = ok && good;
    }
  }
} catch (e) {
  log({ check: 'browser', ok: false, why: String(e) });
  ok = false;
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
