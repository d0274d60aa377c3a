// Makes build/xgrammar.js + build/xgrammar.wasm from @mlc-ai/web-xgrammar (the grammar engine web-llm uses; see
// README "Structured outputs"). The package ships one UMD file with its WebAssembly inlined as base64 and compiles
// it from bytes at run time, which workerd refuses ("Wasm code generation disallowed by embedder"), and it guesses
// its environment from `process` (which workerd's nodejs_compat also has). So, for the version pinned in
// package.json, this script:
// - writes the WebAssembly out as build/xgrammar.wasm, for hosts to compile or import statically (workerd);
// - makes the file an ES module whose Emscripten factory gets `instantiateWasm` from provideWasm() instead;
// - sets the environment to "web" everywhere (no fs, no process, no dynamic import of node:module; nothing it
//   loads at run time: the WebAssembly comes from the host).
// Each edit must match exactly once: a new version of the package fails the build here, not at run time.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const pkgPath = require.resolve("@mlc-ai/web-xgrammar/package.json");
const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
const EXPECTED = "0.1.27";
if (pkg.version !== EXPECTED) {
  console.error(`wasm/build-xgrammar.js edits @mlc-ai/web-xgrammar ${EXPECTED}; ${pkg.version} is installed. Check the edits below against it and update EXPECTED.`);
  process.exit(1);
}
let src = readFileSync(pkgPath.replace(/package\.json$/, "lib/index.js"), "utf8");

function edit(what, from, to) {
  const n = typeof from === "string" ? src.split(from).length - 1 : (src.match(from) ?? []).length;
  if (n < 1) {
    console.error(`wasm/build-xgrammar.js: "${what}" not found in @mlc-ai/web-xgrammar/lib/index.js`);
    process.exit(1);
  }
  src = typeof from === "string" ? src.split(from).join(to) : src.replace(from, to);
}

// the WebAssembly, out of the JavaScript
const m = /wasmBinaryFile="data:application\/octet-stream;base64,([A-Za-z0-9+/=]+)"/.exec(src);
if (!m) {
  console.error("wasm/build-xgrammar.js: the inlined WebAssembly was not found");
  process.exit(1);
}
const wasm = Buffer.from(m[1], "base64");
if (!WebAssembly.validate(wasm)) {
  console.error("wasm/build-xgrammar.js: the inlined WebAssembly does not validate");
  process.exit(1);
}
edit("inlined wasm", m[0], 'wasmBinaryFile=""');
// UMD head -> a plain function over an exports object
edit("UMD head", /^\(function \(global, factory\) \{[\s\S]*?\}\)\(this, \(function \(exports\) \{ 'use strict';/, "const __xg = {};\n(function (f) { f(__xg); })((function (exports) { 'use strict';");
edit("source map", /\/\/# sourceMappingURL=index\.js\.map\s*$/, "");
// the script's own URL (only used to find files it never loads here)
edit("script URL", "(typeof document === 'undefined' && typeof location === 'undefined' ? require('u' + 'rl').pathToFileURL(__filename).href : typeof document === 'undefined' ? location.href : (_documentCurrentScript && _documentCurrentScript.tagName.toUpperCase() === 'SCRIPT' && _documentCurrentScript.src || new URL('index.js', document.baseURI).href))", '"file:///xgrammar.js"');
edit("environment: web", 'ENVIRONMENT_IS_WEB=typeof window=="object"', "ENVIRONMENT_IS_WEB=true");
edit("environment: worker", 'ENVIRONMENT_IS_WORKER=typeof importScripts=="function"', "ENVIRONMENT_IS_WORKER=false");
edit("environment: node", 'ENVIRONMENT_IS_NODE=typeof process=="object"&&typeof process.versions=="object"&&typeof process.versions.node=="string"', "ENVIRONMENT_IS_NODE=false");
edit("import of node:module", "const{createRequire:createRequire}=await import('module');", "const createRequire=null;");
// the host's compiled module, instantiated by Emscripten's hook
// one instance at a time: calls that arrive while it starts wait for the same one (the package's own check lets
// two start), and resetInstance() makes the next call start a fresh one
edit("module arguments", "if (binding == null) {\n          binding = await Module();\n      }", "while (binding == null) {\n          const starting = (bindingStart ??= Module(__moduleArg()));\n          const b = await starting;\n          if (bindingStart === starting) binding = b;\n      }");
edit("reset", "let binding = null;", "let binding = null;\n  let bindingStart = null;\n  exports.__reset = () => { binding = null; bindingStart = null; };");

const tail = `
let __wasm;
let __exports;
let __fatal = "";
/** The compiled build/xgrammar.wasm: compile it (Node, browsers) or import it (workerd) before any other call. */
export function provideWasm(module) {
  __wasm = module;
}
/** After an error: the message of xgrammar's last fatal error ("" if none). */
export function takeFatalError() {
  const m = __fatal;
  __fatal = "";
  return m;
}
/**
 * Start a fresh instance for the next call. The package's wrappers all use the current instance, so no object of
 * the old one (a compiler, a compiled grammar, a matcher) may be used after this: call it only when none is live.
 */
export function resetInstance() {
  __xg.__reset();
}
/** The engine's WebAssembly memory once it has started (its size counts toward a host's memory budget). */
export function wasmMemory() {
  return __exports ? Object.values(__exports).find((v) => v instanceof WebAssembly.Memory) : undefined;
}
function __moduleArg() {
  if (!__wasm) throw new Error("the grammar engine's WebAssembly (build/xgrammar.wasm) was not provided: call provideWasm() first");
  return {
    instantiateWasm(imports, receive) {
      WebAssembly.instantiate(__wasm, imports).then((instance) => {
        __exports = instance.exports;
        receive(instance, __wasm);
      });
      return {};
    },
    printErr(s) {
      const m = /^\\[FATAL\\] [^:]*:\\d+: (.*)$/s.exec(s);
      if (m) __fatal = m[1];
      else if (s !== "Aborted()") console.warn("xgrammar: " + s);
    },
  };
}
export const { Grammar, GrammarCompiler, CompiledGrammar, GrammarMatcher, TokenizerInfo, Testings } = __xg;
`;

const dts = `// Generated by wasm/build-xgrammar.js.
export { Grammar, GrammarCompiler, CompiledGrammar, GrammarMatcher, TokenizerInfo, Testings } from "@mlc-ai/web-xgrammar";
export type { StructuralTagLike } from "@mlc-ai/web-xgrammar";
export declare function provideWasm(module: WebAssembly.Module): void;
export declare function wasmMemory(): WebAssembly.Memory | undefined;
export declare function takeFatalError(): string;
export declare function resetInstance(): void;
`;

mkdirSync("build", { recursive: true });
writeFileSync("build/xgrammar.wasm", wasm);
writeFileSync("build/xgrammar.js", `// Generated by wasm/build-xgrammar.js from @mlc-ai/web-xgrammar ${pkg.version} (Apache-2.0).\n${src}\n${tail}`);
writeFileSync("build/xgrammar.d.ts", dts);
console.log(`built build/xgrammar.{js,wasm} (${(wasm.length / 1024).toFixed(0)} KiB of WebAssembly) from @mlc-ai/web-xgrammar ${pkg.version}`);
