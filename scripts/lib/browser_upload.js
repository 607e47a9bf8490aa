// Drives headless Chromium (Debian's, through playwright-core) against
// keyftpd's upload page for scripts/tests/keyftpd_http_browser.sh:
// logs in (HTTP Basic), uploads BIG (cut mid-way by the test's proxy; the
// page retries by itself), screenshots the page mid-upload after the
// resume, then uploads SMALL, reloads the page while it is half sent and
// picks the file again. Prints one JSON line per upload record.
//
// Usage: node browser_upload.js URL USER PASS BIG SMALL SHOT PROFILE_DIR
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.PW_MODULES, "playwright-core"));

const [url, user, pass, big, small, shot, profile] = process.argv.slice(2);
const LONG = { timeout: 150000, polling: 100 };

(async () => {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    httpCredentials: { username: user, password: pass },
    viewport: { width: 900, height: 560 },
  });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(url, { waitUntil: "load" });
    await page.setInputFiles("#pick", big);
    // After the cut and the automatic retry, past half of the file.
    await page.waitForFunction(() => {
      const r = (window.keyftpdUploads || [])[0];
      return r && r.attempts >= 2 && r.state === "uploading" && r.sent > r.size * 0.55;
    }, null, LONG);
    await page.screenshot({ path: shot });
    await page.waitForFunction(() => ["done", "failed"].includes(window.keyftpdUploads[0].state), null, LONG);
    console.log(JSON.stringify(await page.evaluate(() => window.keyftpdUploads[0])));

    // Reload while SMALL is half on the server, then pick it again.
    await page.setInputFiles("#pick", small);
    const name = path.basename(small);
    const deadline = Date.now() + LONG.timeout;
    for (;;) {
      const size = await page.evaluate(async (name) => {
        const r = await fetch(location.pathname + encodeURIComponent(name) + "?state", { cache: "no-store" });
        return r.ok ? (await r.json()).size : -1;
      }, name);
      if (size > 1 << 20) break;
      if (Date.now() > deadline) throw new Error("the small upload never got past 1 MiB");
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.reload({ waitUntil: "load" });
    await page.setInputFiles("#pick", small);
    await page.waitForFunction(() => {
      const r = (window.keyftpdUploads || [])[0];
      return r && ["done", "failed"].includes(r.state);
    }, null, LONG);
    console.log(JSON.stringify(await page.evaluate(() => window.keyftpdUploads[0])));
  } finally {
    await ctx.close();
  }
})().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
