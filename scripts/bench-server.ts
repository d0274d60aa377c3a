// What the serving benchmarks share: `gemma-edge serve` on a model file in a process of its own (killed when the
// benchmark exits), waited for until /health answers 200.
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { freePort } from "../test/helpers/wrangler-dev.ts";

const root = resolve(import.meta.dirname, "..");

/** Start `gemma-edge serve --model <model> --threads 1 [extra]`; resolves with its base URL once it is ready. */
export async function startServe(model: string, extra: string[] = []): Promise<{ base: string; stop: () => void }> {
  const port = await freePort();
  const server = spawn(process.execPath, [resolve(root, "bin/gemma-edge.js"), "serve", "--model", model, "--port", String(port), "--threads", "1", ...extra], { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let log = "";
  server.stdout!.on("data", (d) => (log += d));
  server.stderr!.on("data", (d) => (log += d));
  const stop = () => {
    try {
      process.kill(-server.pid!, "SIGKILL");
    } catch {
      // gone
    }
  };
  process.on("exit", stop);
  const base = `http://127.0.0.1:${port}`;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`gemma-edge serve exited:\n${log}`);
    if (await fetch(`${base}/health`).then((r) => r.status === 200, () => false)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  return { base, stop };
}
