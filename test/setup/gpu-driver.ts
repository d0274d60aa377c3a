// Vitest global setup (main process, before the test processes fork): make the SwiftShader Vulkan driver
// available to WebGPU tests. A failure is passed on to them as GEMMA_EDGE_GPU_DRIVER_ERROR (they fail naming it);
// the other tests run as usual.
import { ensureGpuDriver } from "../../scripts/gpu-driver.ts";

export default function setup(): void {
  if (process.env.VK_ICD_FILENAMES) return; // a driver chosen by the user (a real GPU's, or one set up already)
  try {
    Object.assign(process.env, ensureGpuDriver());
  } catch (e) {
    process.env.GEMMA_EDGE_GPU_DRIVER_ERROR = (e as Error).message;
  }
}
