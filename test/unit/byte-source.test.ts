// ByteSources: HTTP range requests against a loopback server (and the errors of servers that misbehave),
// and the bounds every source checks.
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpByteSource, MemoryByteSource } from "../../src/engine/byte-source.ts";
import { readGguf } from "../../src/engine/gguf.ts";
import { testModel } from "../helpers/models.ts";

let server: Server;
let base = "";
let bytes: Uint8Array;
beforeAll(async () => {
  bytes = (await testModel("tiny", "q4_0")).bytes;
  server = createServer((req, res) => {
    const data = req.url === "/short" ? bytes.subarray(0, 100) : bytes;
    if (req.url === "/norange") {
      res.writeHead(200, { "Content-Length": data.length });
      return res.end(req.method === "HEAD" ? undefined : data);
    }
    if (req.method === "HEAD") {
      res.writeHead(req.url === "/missing" ? 404 : 200, { "Content-Length": req.url === "/short" ? bytes.length : data.length });
      return res.end();
    }
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
    if (!m) return res.writeHead(400).end();
    const [a, b] = [Number(m[1]), Number(m[2])];
    const part = data.subarray(a, b + 1);
    res.writeHead(206, { "Content-Length": part.length, "Content-Range": `bytes ${a}-${b}/${data.length}` });
    res.end(part);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("HttpByteSource", () => {
  it("reads a GGUF header and ranges into a caller's buffer", async () => {
    const src = await HttpByteSource.open(`${base}/model.gguf`);
    expect(src.size).toBe(bytes.length);
    const f = await readGguf(src);
    expect(f.metadata.get("general.architecture")).toBe("gemma");
    const into = new Uint8Array(64);
    await src.read(1000, 64, into);
    expect(Array.from(into)).toEqual(Array.from(bytes.subarray(1000, 1064)));
  });
  it("names a server that does not do ranges", async () => {
    const src = await HttpByteSource.open(`${base}/norange`);
    await expect(src.read(0, 10)).rejects.toThrow(/range request answered HTTP 200, expected 206/);
  });
  it("names a missing file and a response cut short", async () => {
    await expect(HttpByteSource.open(`${base}/missing`)).rejects.toThrow(/HEAD answered HTTP 404/);
    const src = await HttpByteSource.open(`${base}/short`);
    await expect(src.read(50, 100)).rejects.toThrow(/range response ended after 50 of 100 bytes/);
  });
});

describe("bounds", () => {
  it("refuses reads past the end, naming the source", async () => {
    const src = new MemoryByteSource(new Uint8Array(10), "ten.bin");
    await expect(src.read(5, 10)).rejects.toThrow(/ten\.bin: read of 10 bytes at offset 5 goes past the end \(size 10 bytes\)/);
    await expect(src.read(-1, 2)).rejects.toThrow(/invalid byte range/);
  });
});

describe("FileByteSource", () => {
  it("reads ranges into a caller's buffer exactly, nothing before or after them", async () => {
    const { FileByteSource } = await import("../../src/hosts/node-file-source.ts");
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "ge-file-"));
    try {
      const data = new Uint8Array(40 << 20);
      for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
      const path = join(dir, "f.bin");
      writeFileSync(path, data);
      const src = await FileByteSource.open(path);
      for (const [offset, length] of [[0, 10], [123, 16 << 20], [5, (16 << 20) + 1], [1000, 35 << 20], [data.length - 7, 7]] as const) {
        const into = new Uint8Array(length + 3).fill(0xee).subarray(1, length + 1);
        expect(await src.read(offset, length, into)).toBe(into);
        expect(Buffer.from(into).equals(Buffer.from(data.subarray(offset, offset + length))), `${length} bytes at ${offset}`).toBe(true);
        expect(new Uint8Array(into.buffer)[0]).toBe(0xee); // nothing written before the view
        expect(new Uint8Array(into.buffer)[length + 1]).toBe(0xee); // nor after it
      }
      expect(Buffer.from(await src.read(77, 1000)).equals(Buffer.from(data.subarray(77, 1077)))).toBe(true);
      await expect(src.read(data.length - 5, 10)).rejects.toThrow(/goes past the end/);
      await src.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
