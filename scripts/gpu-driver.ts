// A Vulkan driver for WebGPU on machines without a GPU: SwiftShader, the CPU Vulkan ICD Debian ships inside its
// chromium-common package, fetched with `apt-get download` (no apt sources touched, nothing installed system-wide)
// and unpacked into .cache/gpu-driver. The tests' global setup calls ensureGpuDriver(); run this file to print the
// environment settings for your own shell: `eval "$(node scripts/gpu-driver.ts)"`.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const dir = resolve(root, ".cache/gpu-driver");
const lib = resolve(dir, "usr/lib/chromium");

/** The environment that makes Dawn use SwiftShader: its ICD file, and the Vulkan loader shipped beside it. */
export function ensureGpuDriver(): { VK_ICD_FILENAMES: string; LD_LIBRARY_PATH: string } {
  const icd = resolve(lib, "vk_swiftshader_icd.json");
  if (!existsSync(icd)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    try {
      execFileSync("apt-get", ["download", "chromium-common"], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
      const deb = readdirSync(dir).find((f) => f.endsWith(".deb"));
      if (!deb) throw new Error("apt-get download wrote no .deb file");
      execFileSync("dpkg-deb", ["-x", deb, "."], { cwd: dir });
      rmSync(resolve(dir, deb));
    } catch (e) {
      const err = e as Error & { stderr?: Buffer };
      throw new Error(
        `cannot set up the SwiftShader Vulkan driver for WebGPU (apt-get download chromium-common; dpkg-deb -x): ${err.stderr?.toString().trim() || err.message}`,
      );
    }
    if (!existsSync(icd)) throw new Error(`chromium-common has no ${icd}: SwiftShader is missing from this Debian package`);
  }
  const ld = [lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":");
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: ld };
}

if (import.meta.main) {
  for (const [k, v] of Object.entries(ensureGpuDriver())) console.log(`export ${k}=${v}`);
}
