// Calls `clock.format` once its providers are ready and publishes the answer.
import { Module } from "@pons/sdk";

class Consumer extends Module {
  protected override async onDepsReady(): Promise<void> {
    const text = await this.request("clock", "format", { ms: 60000 });
    this.log("info", `consumer got ${text}`);
    this.publish("demo:formatted", { text });
  }
}

new Consumer().run();
