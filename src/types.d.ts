// WebAssembly modules imported statically (workerd compiles them at deploy time).
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
