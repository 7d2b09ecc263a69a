// Provides `clock`: `format` turns milliseconds into text with the `ms` npm package.
import { Module } from "@pons/sdk";
import ms from "ms";

class Clock extends Module {
  protected override onRequest(method: string, params: unknown): unknown {
    if (method === "format") return ms((params as { ms: number }).ms);
    return super.onRequest(method, params);
  }
}

new Clock().run();
