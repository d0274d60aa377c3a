// Builds the chat page: src/web/chat.ts (with the engine, for "Run in this browser", and the WebAssembly kernels
// and grammar engine from build/, which wasm/build.js makes first) bundled by esbuild into one script, inlined into
// src/web/chat.html, written to build/chat.html (the Worker imports it as text; the Node server reads it).
import { build } from "esbuild";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const { outputFiles } = await build({
  entryPoints: ["src/web/chat.ts"],
  bundle: true,
  write: false,
  format: "iife",
  target: "es2022",
  minify: true,
  legalComments: "none",
  define: {
    KERNELS_RELAXED: JSON.stringify(readFileSync("build/kernels-relaxed.wasm").toString("base64")),
    KERNELS_SIMD: JSON.stringify(readFileSync("build/kernels-simd.wasm").toString("base64")),
    XGRAMMAR_WASM: JSON.stringify(readFileSync("build/xgrammar.wasm").toString("base64")),
  },
});
const script = outputFiles[0].text.replaceAll("</script", "<\\/script");
const html = readFileSync("src/web/chat.html", "utf8").replace("/*SCRIPT*/", () => script);
mkdirSync("build", { recursive: true });
writeFileSync("build/chat.html", html);
console.log(`built build/chat.html (${(html.length / 1024).toFixed(1)} KiB)`);
