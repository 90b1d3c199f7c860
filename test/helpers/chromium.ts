import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

// The browser tests drive Debian's Chromium through playwright-core: nothing is
// downloaded, and a machine without it is told how to get it.

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A headless Chromium; throws with the install command when it is missing. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: the browser tests need Debian's Chromium; install it with \`apt-get install chromium\` (as root, after apt-get update)`,
    );
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}
