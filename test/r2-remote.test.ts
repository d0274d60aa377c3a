// `gemma-edge r2 put --remote` against an S3-compatible endpoint nobody here wrote: wrangler dev's local R2 S3 API
// (miniflare), started with S3 credentials in a throw-away config; objects are read back through wrangler.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AwsClient } from "aws4fetch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { putRemote, runWrangler } from "../src/tools/r2.ts";
import { runCli } from "./helpers/cli.ts";
import { freePort, startWranglerDev, type DevServer } from "./helpers/wrangler-dev.ts";

const dir = mkdtempSync(join(tmpdir(), "gemma-edge-r2-"));
const config = join(dir, "wrangler.toml");
const state = join(dir, "state");
const creds = { accessKeyId: "test-key-id", secretAccessKey: "test-secret" };
let endpoint = "";
let server: DevServer | undefined;

const run = (env: Record<string, string>, ...args: string[]) => runCli(args, env);
const withCreds = { R2_ACCESS_KEY_ID: creds.accessKeyId, R2_SECRET_ACCESS_KEY: creds.secretAccessKey };

async function readBack(key: string): Promise<Buffer | undefined> {
  const out = join(dir, "back.bin");
  const g = await runWrangler(["r2", "object", "get", `gemma-edge-models/${key}`, "--file", out, "--local", "--persist-to", state, "-c", config], "pipe");
  return g.code === 0 ? readFileSync(out) : undefined;
}

function randomFile(name: string, size: number, seed: number): string {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) b[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  const path = join(dir, name);
  writeFileSync(path, b);
  return path;
}

beforeAll(async () => {
  writeFileSync(join(dir, "w.js"), `export default { fetch() { return new Response("ok"); } };\n`);
  writeFileSync(
    config,
    `name = "r2-s3-test"\nmain = "w.js"\ncompatibility_date = "2026-11-01"\n[[r2_buckets]]\nbinding = "B"\nbucket_name = "gemma-edge-models"\n` +
      `local_dev = { experimental_s3_credentials = { accessKeyId = "${creds.accessKeyId}", secretAccessKey = "${creds.secretAccessKey}" } }\n`,
  );
  server = await startWranglerDev(["-c", config, "--persist-to", state]);
  endpoint = `${server.base}/cdn-cgi/local/r2/s3`;
}, 90_000);

afterAll(() => server?.stop());

describe("gemma-edge r2 put --remote (S3 multipart)", () => {
  it("uploads in parts with progress; the object reads back byte for byte", async () => {
    const file = randomFile("big.bin", 12_000_000, 7);
    const r = await run(withCreds, "r2", "put", "--remote", "--endpoint", endpoint, "--file", file, "--key", "models/big one.bin", "--part-size", "5");
    expect(r.code, r.stderr).toBe(0);
    // not a TTY: one progress line per 10%, then the summary; 3 parts of 5 MiB, 5 MiB, rest: the etag says "-3"
    expect(r.stderr).toMatch(/^0% 0\.0\/12\.0 MB\n43% 5\.2\/12\.0 MB\n87% 10\.5\/12\.0 MB\n100% 12\.0\/12\.0 MB\nput .*big\.bin \(12\.0 MB\) into R2 as gemma-edge-models\/models\/big one\.bin \(etag "[0-9a-f]{32}-3"\) in [\d.]+ s\n$/);
    expect((await readBack("models/big one.bin"))?.equals(readFileSync(file))).toBe(true);
  }, 60_000);

  it("an interrupted upload is aborted: nothing under the key, the upload id is gone", async () => {
    const file = randomFile("cut.bin", 11_000_000, 9);
    const ac = new AbortController();
    let uploadId = "";
    const put = putRemote({
      file, key: "cut.bin", bucket: "gemma-edge-models", endpoint, ...creds, partSize: 5 << 20, signal: ac.signal,
      onStart: (id) => (uploadId = id),
      onProgress: (sent) => sent > 0 && ac.abort(), // after the first part
    });
    await expect(put).rejects.toThrow("upload interrupted");
    expect(uploadId).not.toBe("");
    const s3 = new AwsClient({ ...creds, service: "s3", region: "auto" });
    expect((await s3.fetch(`${endpoint}/gemma-edge-models/cut.bin`, { method: "HEAD" })).status).toBe(404);
    const complete = await s3.fetch(`${endpoint}/gemma-edge-models/cut.bin?uploadId=${encodeURIComponent(uploadId)}`, {
      method: "POST", body: `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"x"</ETag></Part></CompleteMultipartUpload>`,
    });
    expect(await complete.text()).toContain("<Code>NoSuchUpload</Code>");
  }, 60_000);

  it("names what is wrong: bad credentials, unreachable endpoint, missing settings", async () => {
    const file = randomFile("small.bin", 1000, 3);
    const closed = `http://127.0.0.1:${await freePort()}/s3`; // nothing listens there
    const cases: [Record<string, string>, string[], RegExp][] = [
      [{ ...withCreds, R2_SECRET_ACCESS_KEY: "wrong" }, ["--endpoint", endpoint], /R2 CreateMultipartUpload failed: HTTP 403 SignatureDoesNotMatch: .*; nothing was stored under gemma-edge-models\/k\.bin/],
      [withCreds, ["--endpoint", closed], /cannot reach the R2 endpoint http:\/\/127\.0\.0\.1:\d+\/s3: ECONNREFUSED/],
      [{ R2_ACCESS_KEY_ID: "", R2_SECRET_ACCESS_KEY: "" }, ["--endpoint", endpoint], /--remote needs R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY/],
      [{ ...withCreds, R2_ENDPOINT: "", CLOUDFLARE_ACCOUNT_ID: "" }, [], /--remote needs --endpoint, R2_ENDPOINT or CLOUDFLARE_ACCOUNT_ID/],
      [withCreds, ["--endpoint", endpoint, "--part-size", "4"], /--part-size must be an integer >= 5/],
      [withCreds, ["--endpoint", endpoint, "--local"], /give one of --local or --remote/],
    ];
    for (const [env, args, msg] of cases) {
      const r = await run(env, "r2", "put", "--remote", "--file", file, "--key", "k.bin", ...args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr).toMatch(msg);
    }
    expect(await readBack("k.bin")).toBeUndefined();
  }, 60_000);
});
