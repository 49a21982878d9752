// Drives the node's UI page in Debian's headless Chromium (see chromium.sh).
// Usage: node chromium.mjs PATH/TO/ui_demo OUT_DIR
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [demoPath, outDir] = process.argv.slice(2);
const IDENTITY = "02a1633cafcc01ebfb6d78e39f687a1f0995c62fc95f51ead10a02ee0be551b5dc";
const WAIT = { timeout: 20000 };

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`FAIL - ${name} ${detail}`);
  }
}

// The demo prints ui=URL, then pair=URL for each line we write to it.
const demo = spawn(demoPath, ["127.0.0.1:0"], { stdio: ["pipe", "pipe", "inherit"] });
const lines = createInterface({ input: demo.stdout });
const printed = [];
const waiting = [];
lines.on("line", (line) => {
  const m = /^(?:ui|pair)=(.*)$/.exec(line);
  if (!m) return;
  if (waiting.length) waiting.shift()(m[1]);
  else printed.push(m[1]);
});
function nextUrl() {
  if (printed.length) return Promise.resolve(printed.shift());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("ui_demo printed no URL")), 20000);
    waiting.push((url) => {
      clearTimeout(timer);
      resolve(url);
    });
  });
}
async function freshUrl() {
  const url = nextUrl();
  demo.stdin.write("\n");
  return url;
}

// Records every WebSocket message the page sends and every close, and can
// alter or hold back the next sealed frame (type byte 0x10) on its way out.
function hook() {
  const raw = WebSocket.prototype.send;
  window.__sent = [];
  window.__closes = [];
  WebSocket.prototype.send = function (data) {
    window.__ws = this;
    if (!this.__hooked) {
      this.__hooked = true;
      this.addEventListener("close", (e) => window.__closes.push({ code: e.code, reason: e.reason }));
    }
    let bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    if (bytes[0] === 0x10 && window.__tamper) {
      window.__tamper = false;
      bytes[bytes.length - 1] ^= 1;
    } else if (bytes[0] === 0x10 && window.__hold) {
      window.__hold = false;
      window.__sent.push(bytes);
      return undefined;
    }
    window.__sent.push(bytes);
    return raw.call(this, bytes);
  };
  window.__rawSend = (bytes) => raw.call(window.__ws, bytes);
}

const sealedCount = () => window.__sent.filter((b) => b[0] === 0x10).length;

async function openPaired(browser, url, problems) {
  const page = await browser.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.addInitScript(hook);
  await page.goto(url);
  await page.waitForSelector('#state[data-state="paired"]', WAIT);
  await page.waitForFunction(sealedCount, null, WAIT);
  return page;
}

async function closedWith(page) {
  await page.waitForSelector('#state[data-state="closed"]', WAIT);
  await page.waitForFunction(() => window.__closes.length > 0, null, WAIT);
  const close = await page.evaluate(() => window.__closes[0]);
  const state = await page.textContent("#state");
  return { close, state };
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
});
try {
  const url = await nextUrl();
  const base = url.slice(0, url.indexOf("#"));
  const origin = new URL(base).origin;

  // 1. A wrong token: the node refuses the pairing, and the token survives.
  {
    const page = await browser.newPage();
    const wrong = randomBytes(32).toString("base64url");
    await page.goto(`${base}#pair=${wrong}`);
    await page.waitForSelector('#state[data-state="refused"]', WAIT);
    const state = await page.textContent("#state");
    check("a wrong pairing token is refused by the node", /wrong pairing token \(4001\)/.test(state), state);
    check("the status is not shown without pairing", await page.isHidden("#status"));
    await page.close();
  }

  // 2. The right token pairs; the page shows the node's status.
  const problems = [];
  const page = await openPaired(browser, url, problems);
  await page.waitForFunction((id) => document.getElementById("identity").textContent === id, IDENTITY, WAIT);
  check("the paired page shows the node's identity", (await page.textContent("#identity")) === IDENTITY);
  check("the page shows the node's links", (await page.textContent("#links")).includes("127.0.0.1:51234"));
  check("the page shows the node's peers", (await page.textContent("#peers")).includes("message, sync:*"));
  const streams = await page.textContent("#streams");
  const markup = await page.locator("#streams b").count();
  check("peer-chosen strings are shown as text, never markup", streams.includes("<b>not markup</b>") && markup === 0);
  check("the token is gone from the address bar", !page.url().includes("pair="), page.url());
  check("no script error and no CSP violation", problems.length === 0, JSON.stringify(problems));
  await page.screenshot({ path: `${outDir}/paired.png`, fullPage: true });

  // 3. A replayed frame: the last sealed frame the page sent, sent again on its socket.
  await page.evaluate(() => window.__rawSend(window.__sent.filter((b) => b[0] === 0x10).at(-1)));
  {
    const { close, state } = await closedWith(page);
    check("a replayed frame closes the session (4002)", close.code === 4002 && /^replayed frame/.test(close.reason), JSON.stringify(close));
    check("the page says the session closed on the replay", state.includes("replayed frame"), state);
  }

  // 4. The used token pairs no second page.
  {
    const again = await browser.newPage();
    await again.goto(url);
    await again.waitForSelector('#state[data-state="refused"]', WAIT);
    const state = await again.textContent("#state");
    check("a used pairing token is refused", state.includes("already used"), state);
    await again.close();
  }

  // 5. An altered frame (one bit of its tag flipped on the way out).
  {
    const p = await openPaired(browser, await freshUrl(), []);
    await p.evaluate(() => {
      window.__tamper = true;
    });
    const { close } = await closedWith(p);
    check("an altered frame closes the session (4002)", close.code === 4002 && /^altered frame/.test(close.reason), JSON.stringify(close));
    await p.close();
  }

  // 6. A reordered frame (one held back, the next one sent).
  {
    const p = await openPaired(browser, await freshUrl(), []);
    await p.evaluate(() => {
      window.__hold = true;
    });
    const { close } = await closedWith(p);
    check("a reordered frame closes the session (4002)", close.code === 4002 && /^reordered frame/.test(close.reason), JSON.stringify(close));
    await p.close();
  }

  // 7. A page of another origin (about:blank: an opaque origin) gets no WebSocket.
  {
    const p = await browser.newPage();
    const result = await p.evaluate(
      (wsUrl) =>
        new Promise((resolve) => {
          const ws = new WebSocket(wsUrl);
          let opened = false;
          ws.onopen = () => {
            opened = true;
          };
          ws.onclose = (e) => resolve({ opened, code: e.code });
        }),
      `${origin.replace("http:", "ws:")}/ws`,
    );
    check("a page of another origin is refused the WebSocket", !result.opened && result.code === 1006, JSON.stringify(result));
    await p.close();
  }
  await page.close();
} catch (e) {
  check("the browser run completes", false, e.stack);
} finally {
  await browser.close();
  demo.kill();
}
console.log(`chromium: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
