// WebGPU for Node hosts: Dawn through the `webgpu` package. The GPU object is kept for the whole process: when it
// is garbage-collected while a device is alive, Dawn crashes or hangs. Without a GPU, a Vulkan software driver
// (SwiftShader, see scripts/gpu-driver.ts) serves: VK_ICD_FILENAMES and LD_LIBRARY_PATH must point at it.
import type { ByteSource } from "../engine/byte-source.ts";
import { loadModelWebGpu, type WebGpuModel, type WebGpuOptions } from "../engine/backend/webgpu/model.ts";

let gpu: GPU | undefined;

export async function nodeGpuDevice(): Promise<{ device: GPUDevice; dot4I8Packed: boolean }> {
  const { create, globals } = await import("webgpu");
  Object.assign(globalThis, globals);
  gpu ??= create([]);
  const adapter = await gpu.requestAdapter();
  if (!adapter) {
    throw new Error(
      "WebGPU: no adapter. Dawn found no Vulkan driver: install your GPU's Vulkan driver (libvulkan1 and its ICD), " +
        "or point VK_ICD_FILENAMES at a software one (`npm run -s gpu-driver` prints the settings for SwiftShader)",
    );
  }
  const device = await adapter.requestDevice({
    requiredFeatures: adapter.features.has("shader-f16") ? ["shader-f16"] : [],
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  });
  device.addEventListener("uncapturederror", (e) => console.error(`WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`));
  return { device, dot4I8Packed: gpu.wgslLanguageFeatures.has("packed_4x8_integer_dot_product") };
}

export async function loadNodeWebGpuModel(src: ByteSource, opts: WebGpuOptions = {}): Promise<WebGpuModel> {
  const { device, dot4I8Packed } = await nodeGpuDevice();
  return loadModelWebGpu(src, device, { dot4I8Packed, ...opts });
}
