// `wrangler dev` for tests: on a free loopback port, in its own process group (stopped as a whole), from the
// project's own wrangler, with network-touching extras off.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");

/** A loopback port nothing listens on (at the moment of asking). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

export interface DevServer {
  base: string;
  child: ChildProcess;
  stop(): void;
}

/** Starts `wrangler dev ARGS` in the project folder and resolves once it says it is ready. */
export async function startWranglerDev(args: string[]): Promise<DevServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [resolve(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false", ...args], {
    cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
  });
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const stop = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  };
  for (let i = 0; i < 900; i++) {
    if (/Ready on http/.test(log)) return { base: `http://127.0.0.1:${port}`, child, stop };
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  throw new Error(`wrangler dev did not start:\n${log}`);
}
