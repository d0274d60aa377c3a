// Vulkan drivers that run on the CPU, for WebGPU on machines without a GPU, fetched from Debian with
// `apt-get download` (no apt sources touched, nothing installed system-wide) and unpacked under .cache/:
//  - SwiftShader, the ICD inside Debian's chromium-common package (needs only libc); it also brings the Vulkan
//    loader (libvulkan.so.1) that Dawn opens;
//  - Mesa's lavapipe (mesa-vulkan-drivers 25 from <codename>-backports, read through a private apt list), a
//    second compiler that folds and fuses float operations where SwiftShader does not. It needs the LLVM and X
//    libraries that installing Debian's chromium brings.
// The tests' global setup calls these; run this file to print the settings for your own shell:
// `eval "$(node scripts/gpu-driver.ts)"` (SwiftShader) or `eval "$(node scripts/gpu-driver.ts lavapipe)"`.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

const cache = resolve(import.meta.dirname, "../.cache");

/** `apt-get download` these packages into `dir` (with extra apt options) and unpack them there. */
function fetchDebs(dir: string, packages: string[], aptOptions: string[] = []): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("apt-get", [...aptOptions, "download", ...packages], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    const debs = readdirSync(dir).filter((f) => f.endsWith(".deb"));
    if (debs.length !== packages.length) throw new Error(`apt-get download wrote ${debs.length} of ${packages.length} packages`);
    for (const deb of debs) {
      execFileSync("dpkg-deb", ["-x", deb, "."], { cwd: dir });
      rmSync(resolve(dir, deb));
    }
  } catch (e) {
    const err = e as Error & { stderr?: Buffer };
    throw new Error(`apt-get download ${packages.join(" ")} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}

const swiftshaderLib = resolve(cache, "gpu-driver/usr/lib/chromium");

/** SwiftShader: its ICD file, and the Vulkan loader shipped beside it. */
export function ensureGpuDriver(): { VK_ICD_FILENAMES: string; LD_LIBRARY_PATH: string } {
  const icd = resolve(swiftshaderLib, "vk_swiftshader_icd.json");
  if (!existsSync(icd)) {
    try {
      fetchDebs(resolve(cache, "gpu-driver"), ["chromium-common"]);
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
    const codename = /^VERSION_CODENAME=(\w+)/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1];
    if (!codename) throw new Error("cannot set up lavapipe: /etc/os-release names no Debian codename");
    const apt = resolve(cache, "apt-backports");
    mkdirSync(resolve(apt, "lists/partial"), { recursive: true });
    writeFileSync(resolve(apt, "sources.list"), `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${codename}-backports main\n`);
    const options = [
      "-o", `Dir::Etc::SourceList=${resolve(apt, "sources.list")}`, "-o", "Dir::Etc::SourceParts=/nonexistent",
      "-o", `Dir::State::Lists=${resolve(apt, "lists")}`, "-o", `Dir::Cache=${resolve(apt, "cache")}`, "-o", "Debug::NoLocking=1",
    ];
    try {
      execFileSync("apt-get", [...options, "update"], { stdio: ["ignore", "ignore", "pipe"] });
      fetchDebs(dir, ["mesa-vulkan-drivers", "libdrm2", "libdrm-amdgpu1"], options);
    } catch (e) {
      throw new Error(`cannot set up Mesa's lavapipe for WebGPU (${codename}-backports): ${(e as Error).message}`);
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
