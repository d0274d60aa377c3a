// Vitest global setup (main process, before the test processes fork): what the tests need from the system,
// found or fetched so that `npm test` needs nothing installed by hand (see scripts/chromium.ts and
// scripts/gpu-driver.ts):
//  - Chromium for the browser tests: CHROMIUM_PATH is set for them (and its libraries put on LD_LIBRARY_PATH when
//    it runs from .cache/);
//  - the CPU Vulkan drivers for the WebGPU tests. SwiftShader is the default driver; lavapipe's ICD is passed on
//    for the "webgpu-lavapipe" project (the loader reads VK_ICD_FILENAMES when Dawn starts, but LD_LIBRARY_PATH
//    only at process start, so both drivers' libraries go on it here).
// A failure is passed on (GEMMA_EDGE_CHROMIUM_ERROR, GEMMA_EDGE_GPU_DRIVER_ERROR, GEMMA_EDGE_LAVAPIPE_ERROR): the
// tests that need the missing piece fail naming it; the others run as usual.
import { ensureChromium } from "../../scripts/chromium.ts";
import { ensureGpuDriver, ensureLavapipe } from "../../scripts/gpu-driver.ts";

export default function setup(): void {
  // first: as root, installing chromium also brings the LLVM and X libraries that lavapipe needs
  try {
    const c = ensureChromium();
    process.env.CHROMIUM_PATH = c.path;
    if (c.libraryPath.length) process.env.LD_LIBRARY_PATH = [...c.libraryPath, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":");
  } catch (e) {
    process.env.GEMMA_EDGE_CHROMIUM_ERROR = (e as Error).message;
  }
  if (process.env.VK_ICD_FILENAMES) {
    process.env.GEMMA_EDGE_USER_DRIVER = "1"; // a driver chosen by the user (a real GPU's): the tests run on it
    return;
  }
  try {
    Object.assign(process.env, ensureGpuDriver());
  } catch (e) {
    process.env.GEMMA_EDGE_GPU_DRIVER_ERROR = (e as Error).message;
    return;
  }
  try {
    const lvp = ensureLavapipe();
    process.env.GEMMA_EDGE_LAVAPIPE_ICD = lvp.VK_ICD_FILENAMES;
    process.env.LD_LIBRARY_PATH = lvp.LD_LIBRARY_PATH;
  } catch (e) {
    process.env.GEMMA_EDGE_LAVAPIPE_ERROR = (e as Error).message;
  }
}
