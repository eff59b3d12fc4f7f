// Drives Debian's Chromium (through playwright-core) against the demo page and prints what a
// person would see, as JSON: does the image render, does the video play and seek, and does
// CORS let an allowed origin fetch a private object while blocking another origin. Then a
// request to a marker path, and the page again in a new context (nothing in the browser's
// cache): the test reads the proxy's access lines after the marker.
//
// Usage: node browser_check.js PAGE_URL ALLOWED_ORIGIN BLOCKED_ORIGIN
const { launch } = require("./chromium.js");

const [pageUrl, allowedOrigin, blockedOrigin] = process.argv.slice(2);

async function fetchFrom(browser, origin, url) {
  const page = await browser.newPage();
  // A blank page at `origin`, served by the test on loopback: the fetch below is cross-origin.
  await page.goto(`${origin}/`);
  const result = await page.evaluate(async (target) => {
    try {
      const response = await fetch(target, { headers: { Range: "bytes=0-3" } });
      return { ok: response.ok, status: response.status, bytes: (await response.arrayBuffer()).byteLength };
    } catch (error) {
      return { blocked: true, error: String(error) };
    }
  }, url);
  await page.close();
  return result;
}

async function view(browser) {
  const page = await browser.newPage();
  await page.goto(pageUrl);
  await page.waitForFunction(() => document.getElementById("image").complete, null, { timeout: 15000 });
  const image = await page.evaluate(() => ({
    naturalWidth: document.getElementById("image").naturalWidth,
    src: document.getElementById("image").src,
  }));
  const video = await page.evaluate(async () => {
    const v = document.getElementById("video");
    v.muted = true;
    await new Promise((ok, fail) => {
      if (v.readyState >= 1) return ok();
      v.onloadedmetadata = ok;
      v.onerror = () => fail(new Error("video error " + (v.error && v.error.code)));
    });
    await v.play();
    const seekTo = v.duration / 2;
    v.currentTime = seekTo;
    await new Promise((ok) => (v.onseeked = ok));
    await new Promise((ok) => setTimeout(ok, 700));
    return { duration: v.duration, seekTo, currentTime: v.currentTime };
  });
  await page.close();
  return { image, video };
}

(async () => {
  const browser = await launch(["--autoplay-policy=no-user-gesture-required"]);
  const { image, video } = await view(browser);
  const allowed = await fetchFrom(browser, allowedOrigin, image.src);
  const blocked = await fetchFrom(browser, blockedOrigin, image.src);
  await fetch(new URL("/second-load-marker/here", pageUrl));
  const second = await view(browser);
  await browser.close();
  console.log(JSON.stringify({ image, video, allowed, blocked, second }));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
