// A hostile web page, as an operator's browser would load it from another origin: it serves
// itself on 127.0.0.1 (a port of its own), then fires a "simple" cross-site POST at the target
// (text/plain body, `mode: "no-cors"`, so no preflight), the way a page drives a local admin
// port. Prints {"fired": true} once the browser has sent it, or {"fired": false, "error"}.
// Usage: node cross_site_post.js TARGET_URL BODY
const http = require("http");
const { launch } = require("./chromium.js");

async function main() {
  const [target, body] = process.argv.slice(2);
  const server = http.createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<!doctype html><title>a page</title>");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const page_url = `http://localhost:${server.address().port}/`;
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(page_url);
    const outcome = await page.evaluate(async ([target, body]) => {
      try {
        await fetch(target, { method: "POST", mode: "no-cors", body });
        return { fired: true };
      } catch (error) {
        return { fired: false, error: String(error) };
      }
    }, [target, body]);
    console.log(JSON.stringify(outcome));
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
