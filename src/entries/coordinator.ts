// Worker entry of the coordinator script in a sharded deployment: the model's Durable Object (ModelHost), bound
// by the front Worker; it reaches the shards through its SHARD_<i> bindings. No route of its own (404).
export { ModelHost } from "../hosts/durable-object.ts";

export default {
  fetch(): Response {
    return new Response("not found: this Worker serves no requests of its own", { status: 404 });
  },
};
