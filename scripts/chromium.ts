// Debian's Chromium for the browser tests, found or fetched so that `npm test` needs nothing installed by hand:
//  1. CHROMIUM_PATH, or /usr/bin/chromium when it is there;
//  2. as root: `apt-get install chromium` (it also brings the LLVM and X libraries Mesa's lavapipe needs);
//  3. otherwise: the packages that installing chromium would add to this system (apt's own answer, from a
//     simulated install) fetched with `apt-get download` and unpacked under .cache/chromium, run from there with
//     their libraries on LD_LIBRARY_PATH. Nothing is installed and apt's configuration is not touched.
// The tests' global setup calls this; `node scripts/chromium.ts` prints the settings for your shell.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { cache, debianMain, fetchDebs } from "./debian.ts";

const SYSTEM = "/usr/bin/chromium";

export interface Chromium {
  /** The browser executable to launch. */
  path: string;
  /** Library folders to put on LD_LIBRARY_PATH (for a Chromium unpacked under .cache/). */
  libraryPath: string[];
}

export function ensureChromium(): Chromium {
  if (process.env.CHROMIUM_PATH) {
    if (!existsSync(process.env.CHROMIUM_PATH)) throw new Error(`CHROMIUM_PATH=${process.env.CHROMIUM_PATH} does not exist`);
    return { path: process.env.CHROMIUM_PATH, libraryPath: [] };
  }
  if (existsSync(SYSTEM)) return { path: SYSTEM, libraryPath: [] };
  if (process.getuid?.() === 0) {
    try {
      const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
      execFileSync("apt-get", ["update", "-qq"], { stdio: ["ignore", "ignore", "pipe"], env });
      execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "chromium"], { stdio: ["ignore", "ignore", "pipe"], env });
    } catch (e) {
      const err = e as Error & { stderr?: Buffer };
      throw new Error(`cannot install Debian's chromium with apt-get (as root): ${err.stderr?.toString().trim() || err.message}`);
    }
    if (!existsSync(SYSTEM)) throw new Error(`apt-get installed chromium, but there is no ${SYSTEM}`);
    return { path: SYSTEM, libraryPath: [] };
  }
  return unpacked();
}

/** Chromium and the packages it needs that this system lacks, unpacked under .cache/chromium. */
function unpacked(): Chromium {
  const dir = resolve(cache, "chromium");
  const path = resolve(dir, "usr/lib/chromium/chromium");
  const done = resolve(dir, ".complete"); // the library folders, once everything is unpacked
  if (existsSync(done)) return { path, libraryPath: JSON.parse(readFileSync(done, "utf8")) as string[] };
  try {
    const options = debianMain(); // works where the system has no apt lists yet, without root
    const plan = execFileSync("apt-get", [...options, "-s", "-qq", "install", "--no-install-recommends", "chromium"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    const packages = [...plan.matchAll(/^Inst (\S+)/gm)].map((m) => m[1]!);
    if (!packages.includes("chromium")) throw new Error(`a simulated install of chromium would not install it:\n${plan.slice(0, 500)}`);
    fetchDebs(dir, packages, options);
  } catch (e) {
    throw new Error(`cannot fetch Debian's chromium into ${dir}: ${(e as Error).message}`);
  }
  if (!existsSync(path)) throw new Error(`the chromium package has no ${path}`);
  // every folder the packages put shared libraries in (some in subfolders, e.g. x86_64-linux-gnu/pulseaudio)
  const libraryPath = [...new Set(libraries(dir))];
  writeFileSync(done, JSON.stringify(libraryPath));
  return { path, libraryPath };
}

/** Folders under `dir` that hold shared libraries (*.so, *.so.N). */
function libraries(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = resolve(dir, e.name);
    if (e.isDirectory()) out.push(...libraries(p));
    else if (/\.so(\.\d+)*$/.test(e.name) && !out.includes(dir)) out.push(dir);
  }
  return out;
}

if (import.meta.main) {
  const c = ensureChromium();
  console.log(`export CHROMIUM_PATH=${c.path}`);
  if (c.libraryPath.length) console.log(`export LD_LIBRARY_PATH=${[...c.libraryPath, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":")}`);
}
