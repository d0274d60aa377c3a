// Vitest global setup (main process, before the test processes fork): the CPU Vulkan drivers for the WebGPU
// tests. SwiftShader is the default driver; lavapipe's ICD is passed on for the "webgpu-lavapipe" project (the
// loader reads VK_ICD_FILENAMES when Dawn starts, but LD_LIBRARY_PATH only at process start, so both drivers'
// libraries go on it here). A failure is passed on as GEMMA_EDGE_GPU_DRIVER_ERROR / GEMMA_EDGE_LAVAPIPE_ERROR:
// the WebGPU tests fail naming it; the other tests run as usual.
import { ensureGpuDriver, ensureLavapipe } from "../../scripts/gpu-driver.ts";

export default function setup(): void {
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
