// Debian packages for the tests, fetched without touching the system's apt configuration: `apt-get download`
// into a folder under .cache/ and unpacked there (nothing installed), through a private apt list when the
// packages come from a suite the system does not list (backports) or the system has no lists yet.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

export const cache = resolve(import.meta.dirname, "../.cache");

/** This machine's Debian codename (bookworm, ...). */
export function codename(): string {
  const name = /^VERSION_CODENAME=(\w+)/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1];
  if (!name) throw new Error("/etc/os-release names no Debian codename");
  return name;
}

/** `apt-get download` these packages into `dir` (with extra apt options) and unpack them there. */
export function fetchDebs(dir: string, packages: string[], aptOptions: string[] = []): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("apt-get", [...aptOptions, "download", ...packages], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    const debs = readdirSync(dir).filter((f) => f.endsWith(".deb"));
    if (debs.length !== packages.length) throw new Error(`apt-get download wrote ${debs.length} of ${packages.length} packages`);
    for (const deb of debs) {
      execFileSync("dpkg-deb", ["-x", deb, "."], { cwd: dir });
      rmSync(resolve(dir, deb));
    }
  } catch (e) {
    const err = e as Error & { stderr?: Buffer };
    throw new Error(`apt-get download ${packages.length > 6 ? `of ${packages.length} packages` : packages.join(" ")} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}

/**
 * Options that make apt read (and `apt-get update` write) a private list of `sources` under .cache/apt-<name>,
 * instead of the system's: no root needed, nothing of the system's changed. Updates the lists once.
 */
export function privateApt(name: string, sources: string[]): string[] {
  const apt = resolve(cache, `apt-${name}`);
  mkdirSync(resolve(apt, "lists/partial"), { recursive: true });
  writeFileSync(resolve(apt, "sources.list"), sources.map((s) => `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${s}\n`).join(""));
  const options = [
    "-o", `Dir::Etc::SourceList=${resolve(apt, "sources.list")}`, "-o", "Dir::Etc::SourceParts=/nonexistent",
    "-o", `Dir::State::Lists=${resolve(apt, "lists")}`, "-o", `Dir::Cache=${resolve(apt, "cache")}`, "-o", "Debug::NoLocking=1",
  ];
  execFileSync("apt-get", [...options, "update"], { stdio: ["ignore", "ignore", "pipe"] });
  return options;
}

/** A private list of this release's main, updates and security suites (chromium is updated through the last). */
export function debianMain(): string[] {
  const name = codename();
  return privateApt("main", [`http://deb.debian.org/debian ${name} main`, `http://deb.debian.org/debian ${name}-updates main`, `http://deb.debian.org/debian-security ${name}-security main`]);
}
