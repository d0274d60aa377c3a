// Vulkan drivers that run on the CPU, for WebGPU on machines without a GPU, fetched from Debian with
// `apt-get download` (no apt sources touched, nothing installed system-wide) and unpacked under .cache/:
//  - SwiftShader, the ICD inside Debian's chromium-common package (needs only libc); it also brings the Vulkan
//    loader (libvulkan.so.1) that Dawn opens;
//  - Mesa's lavapipe (mesa-vulkan-drivers 25 from <codename>-backports, read through a private apt list), a
//    second compiler that folds and fuses float operations where SwiftShader does not. It needs the LLVM and X
//    libraries that installing Debian's chromium brings.
// The tests' global setup calls these; `npm run -s gpu-driver` prints the settings for your own shell:
// `eval "$(npm run -s gpu-driver)"` (SwiftShader) or `eval "$(npm run -s gpu-driver -- lavapipe)"`.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { cache, codename, debianMain, fetchDebs, privateApt } from "./debian.ts";

const swiftshaderLib = resolve(cache, "gpu-driver/usr/lib/chromium");


/** SwiftShader: its ICD file, and the Vulkan loader shipped beside it. */
export function ensureGpuDriver(): { VK_ICD_FILENAMES: string; LD_LIBRARY_PATH: string } {
  const icd = resolve(swiftshaderLib, "vk_swiftshader_icd.json");
  if (!existsSync(icd)) {
    try {
      fetchDebs(resolve(cache, "gpu-driver"), ["chromium-common"], debianMain());
    } catch (e) {
      throw new Error(`cannot set up the SwiftShader Vulkan driver for WebGPU: ${(e as Error).message}`);
    }
    if (!existsSync(icd)) throw new Error(`chromium-common has no ${icd}: SwiftShader is missing from this Debian package`);
  }
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: [swiftshaderLib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":") };
}

/** Mesa's lavapipe from backports: its ICD file (with an absolute library path) and its libraries. */
export function ensureLavapipe(): { VK_ICD_FILENAMES: string; LD_LIBRARY_PATH: string } {
  const base = ensureGpuDriver();
  const dir = resolve(cache, "gpu-driver-lavapipe");
  const lib = resolve(dir, "usr/lib/x86_64-linux-gnu");
  const icd = resolve(dir, "lvp_icd.json");
  if (!existsSync(icd)) {
    let name = "";
    try {
      name = codename();
      const options = privateApt("backports", [`http://deb.debian.org/debian ${name}-backports main`]);
      fetchDebs(dir, ["mesa-vulkan-drivers", "libdrm2", "libdrm-amdgpu1"], options);
    } catch (e) {
      throw new Error(`cannot set up Mesa's lavapipe for WebGPU (${name || "?"}-backports): ${(e as Error).message}`);
    }
    const so = resolve(lib, "libvulkan_lvp.so");
    if (!existsSync(so)) throw new Error(`mesa-vulkan-drivers has no ${so}`);
    const manifest = JSON.parse(readFileSync(resolve(dir, "usr/share/vulkan/icd.d/lvp_icd.json"), "utf8"));
    manifest.ICD.library_path = so;
    writeFileSync(icd, JSON.stringify(manifest));
  }
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: [lib, base.LD_LIBRARY_PATH].join(":") };
}

if (import.meta.main) {
  const env = process.argv[2] === "lavapipe" ? ensureLavapipe() : ensureGpuDriver();
  for (const [k, v] of Object.entries(env)) console.log(`export ${k}=${v}`);
}
