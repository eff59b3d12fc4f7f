// Launches Debian's Chromium through playwright-core, headless, as every browser test drives
// it: no sandbox (tests run as root), no GPU, QUIC or background traffic; `extraArgs` follow.
const { chromium } = require("playwright-core");

function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extraArgs,
    ],
  });
}

module.exports = { launch };
