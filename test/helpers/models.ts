// Generated test models, written once per test run into a temp folder (or kept in memory).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestModelBytes, SHAPES, WEIGHT_MIXES, WEIGHT_TYPES, type TestModelShape } from "../../src/tools/make-test-model.ts";

const dir = mkdtempSync(join(tmpdir(), "gemma-edge-test-"));
const cache = new Map<string, Promise<{ path: string; bytes: Uint8Array }>>();

export function testModel(shape: string | TestModelShape = "tiny", type = "q4_0", seed = 1, chatTemplate?: string | null) {
  const s = typeof shape === "string" ? SHAPES[shape]! : shape;
  const key = JSON.stringify([s, type, seed, chatTemplate]);
  let p = cache.get(key);
  if (!p) {
    p = makeTestModelBytes({ shape: s, type: WEIGHT_MIXES[type]?.type ?? WEIGHT_TYPES[type]!, mix: WEIGHT_MIXES[type], seed, chatTemplate }).then((bytes) => {
      const path = join(dir, `${typeof shape === "string" ? shape : "custom"}-${type}-${seed}-${cache.size}.gguf`);
      writeFileSync(path, bytes);
      return { path, bytes };
    });
    cache.set(key, p);
  }
  return p;
}
