// GET/HEAD /v1/models/{id}/gguf: the model's GGUF file, for engines that run in the browser. HTTP range requests
// (206 with Content-Range; 416 for a range past the end), an ETag (If-None-Match: 304) and caching headers, so a
// browser can cache the file and a ByteSource can read tensors by range.
import type { Context, Hono } from "hono";
import type { AppEnv } from "./app.ts";
import type { ModelFiles } from "../service/contract.ts";
import { ApiError } from "./errors.ts";

/** A single `bytes=` range of a file of `size` bytes; undefined for no (or an unparseable) Range header, as RFC 9110 says to ignore. */
export function parseRange(header: string | undefined, size: number): { offset: number; length: number } | "unsatisfiable" | undefined {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const n = Math.min(Number(m[2]), size); // the last n bytes
    return n > 0 ? { offset: size - n, length: n } : "unsatisfiable";
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { offset: start, length: end - start + 1 };
}

export function modelFileRoutes(app: Hono<AppEnv>, getFiles: ((bindings: unknown) => ModelFiles) | undefined): void {
  const handler = async (c: Context<AppEnv>) => {
    const config = c.get("config");
    const id = c.req.param("id");
    if (id !== config.modelId) throw new ApiError(404, `The model '${id}' does not exist`, { param: "model", code: "model_not_found" });
    const files = getFiles?.(c.env);
    if (!files) throw new ApiError(404, "this server does not serve model files", { code: "not_found" });
    const st = await files.stat();
    if (!st) throw new ApiError(503, `the file of model "${id}" is missing from the model store`, { code: "model_unavailable" });
    const etag = `"${st.etag}"`;
    const headers: Record<string, string> = {
      "Accept-Ranges": "bytes",
      ETag: etag,
      // revalidate after a day: the object may be replaced under the same name (a new ETag)
      "Cache-Control": "public, max-age=86400",
      "Content-Type": "application/octet-stream",
      "Content-Disposition": `attachment; filename="${id}.gguf"`,
    };
    if (c.req.header("If-None-Match") === etag) return c.body(null, 304, headers);
    const range = parseRange(c.req.header("Range"), st.size);
    if (range === "unsatisfiable") {
      return c.body(null, 416, { ...headers, "Content-Range": `bytes */${st.size}` });
    }
    const { offset, length } = range ?? { offset: 0, length: st.size };
    headers["Content-Length"] = String(length);
    if (range) headers["Content-Range"] = `bytes ${offset}-${offset + length - 1}/${st.size}`;
    const status = range ? 206 : 200;
    if (c.req.method === "HEAD") return c.body(null, status, headers);
    return c.body(await files.read(offset, length), status, headers);
  };
  app.on(["GET", "HEAD"], "/v1/models/:id/gguf", handler);
}
