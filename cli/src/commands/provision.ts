import { withBus, type Command } from "../shared";

/** `moss provision`: streams, consumers and buckets, as admin — what `moss up` does before starting services. */
export const provision: Command = {
  name: "provision",
  help: "  provision                create or update Moss's streams, consumers and KV buckets (as admin), as moss up does",
  async run({ config }) {
    await withBus(config(), async (bus) => bus.provision());
    console.log("streams, consumers and buckets are provisioned");
    return 0;
  },
};
