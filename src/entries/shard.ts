// Worker entry of a shard script: exports the shard's Durable Object class and nothing reachable. The script is
// deployed with workers_dev = false and no routes (no public URL); this fetch handler answers 404 to anything that
// reaches it anyway. Only the coordinator reaches the Durable Object, through its binding.
export { ModelShard } from "../hosts/shard-host.ts";

export default {
  fetch(): Response {
    return new Response("not found: this Worker serves no requests of its own", { status: 404 });
  },
};
