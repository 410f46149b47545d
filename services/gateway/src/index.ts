// The gateway: the agents' public address, a route per agent from the bus, counters per version for the promoter.
export { AgentProxy, pick, type ProxyOptions } from "./proxy";
export { startGateway, type GatewayOptions, type RunningGateway } from "./gateway";
