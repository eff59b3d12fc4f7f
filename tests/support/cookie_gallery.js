// Drives Debian's Chromium (through playwright-core) through a signed-policy session: a page
// on the application's origin asks the proxy's `_session` for cookies, then loads a gallery
// of images from the proxy twice. Prints, as JSON, the cookies the browser kept, each image's
// width, and every proxy response Chromium saw (from the network or from its cache).
//
// Usage: node cookie_gallery.js APP_ORIGIN PROXY_ORIGIN SESSION_URL
const { launch } = require("./chromium.js");

const [appOrigin, proxyOrigin, sessionUrl] = process.argv.slice(2);

async function loadGallery(context) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const responses = [];
  cdp.on("Network.responseReceived", (event) => {
    if (event.response.url.startsWith(proxyOrigin)) {
      const { url, status, fromDiskCache, fromMemoryCache } = event.response;
      responses.push({ url, status, cached: Boolean(fromDiskCache || fromMemoryCache) });
    }
  });
  await page.goto(`${appOrigin}/gallery`);
  await page.waitForFunction(
    () => Array.from(document.images).every((image) => image.complete),
    null,
    { timeout: 15000 },
  );
  const images = await page.evaluate(() =>
    Array.from(document.images).map((image) => ({ id: image.id, width: image.naturalWidth })),
  );
  await page.close();
  return { images, responses };
}

(async () => {
  const browser = await launch();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${appOrigin}/`);
  // The application's page starts the session with a credentialed cross-origin fetch.
  const session = await page.evaluate(async (url) => {
    const response = await fetch(url, { credentials: "include" });
    return { status: response.status };
  }, sessionUrl);
  const cookies = (await context.cookies()).map(({ name, path, httpOnly, sameSite, secure }) => ({
    name, path, httpOnly, sameSite, secure,
  }));
  const first = await loadGallery(context);
  const second = await loadGallery(context);
  console.log(JSON.stringify({ session, cookies, first, second }));
  await browser.close();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
