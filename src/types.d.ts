// WebAssembly modules imported statically (workerd compiles them at deploy time).
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}

// Text modules: the chat page (build/chat.html, a wrangler Text rule).
declare module "*.html" {
  const text: string;
  export default text;
}
