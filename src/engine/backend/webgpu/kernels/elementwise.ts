// Element-wise kernels: GeGLU, the residual add, and copying the batch's last row.
import { HEADER, WG } from "./common.ts";

const elementwise = (bindings: string, body: string) => HEADER + /* wgsl */ `
struct P { cols: u32 }
@group(0) @binding(1) var<uniform> p: P;
${bindings}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = g.x + g.y * nwg.x * ${WG}u;
  if (i >= step.n * p.cols) { return; }
  ${body}
}`;

/** gate = gelu(gate) * up through ggml's f16 GELU table (the CPU path's own table, uploaded). */
export const GEGLU = elementwise(
  `@group(0) @binding(2) var<storage, read_write> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;
@group(0) @binding(4) var<storage, read> gelu: array<f32>;`,
  `let x = gate[i];
  var y = x;
  if (x <= -10.0) { y = 0.0; } else if (x < 10.0) { y = gelu[pack2x16float(vec2f(x, 0.0)) & 0xffffu]; }
  gate[i] = y * up[i];`,
);

/** x += y over the batch's rows. */
export const ADD = elementwise(
  `@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;`,
  "x[i] = x[i] + y[i];",
);

/** Row step.lastRow of x to row 0 (before the last layer's feed-forward runs on the last token only). */
export const COPY_LAST_ROW = HEADER + /* wgsl */ `
struct P { cols: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= p.cols || step.lastRow == 0u) { return; }
  x[g.x] = x[step.lastRow * p.cols + g.x];
}`;
