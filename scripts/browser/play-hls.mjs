// Plays an HLS master playlist in headless Chromium with hls.js and prints
// what the page saw, as JSON: whether playback started, how many
// renditions hls.js listed, how far currentTime got, and any fatal error.
//
//   node scripts/browser/play-hls.mjs http://127.0.0.1:PORT/player.html
//
// puppeteer-core and hls.js come from /var/tmp/nommer-tools/node
// (scripts/install-deps.sh --test); the browser is Debian's chromium.
import { createRequire } from "node:module";
const require = createRequire("/var/tmp/nommer-tools/node/");
const puppeteer = require("puppeteer-core");

const url = process.argv[2];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
});
try {
  const page = await browser.newPage();
  const console_lines = [];
  page.on("console", (m) => console_lines.push(m.text()));
  await page.goto(url);
  await page.waitForFunction("window.result !== undefined", { timeout: 90000 });
  const result = await page.evaluate("window.result");
  result.console = console_lines.slice(-20);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
