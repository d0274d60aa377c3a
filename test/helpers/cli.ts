// Runs the gemma-edge command line as a user runs it (a child process), collecting exit code and output.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const BIN = new URL("../../bin/gemma-edge.js", import.meta.url).pathname;

export async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], { maxBuffer: 1 << 24, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
