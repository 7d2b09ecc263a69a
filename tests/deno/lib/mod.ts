// A tiny SDK-like library for the deno tests: a module answers `init` with `ready`, `ping` with
// `pong`, handles `rpc_request`, `deliver` and `shutdown`, and can call other modules' services,
// publish and log. Imported by the test modules through an import map (`@pons/sdk`).

import { type KernelMessage, messages, send } from "./wire.ts";

export type { KernelMessage } from "./wire.ts";

type Level = "debug" | "info" | "warn" | "error";

export abstract class Module {
  #next = 0;
  #pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  protected workspacePath = "";

  /** After `init`, before `ready`. */
  protected onInit(): Promise<void> | void {}
  /** Every required service has a ready provider. */
  protected onDepsReady(): Promise<void> | void {}
  /** An RPC to a service this module provides. */
  protected onRequest(method: string, _params: unknown): Promise<unknown> | unknown {
    throw new Error(`unknown method ${method}`);
  }
  /** A message on a subscribed topic. */
  protected onMessage(_topic: string, _payload: unknown): Promise<void> | void {}

  log(level: Level, msg: string, data?: Record<string, unknown>): void {
    send({ type: "log", level, msg, ...(data ? { data } : {}) });
  }

  publish(topic: string, payload: unknown): void {
    send({ type: "publish", topic, payload });
  }

  /** Calls `method` of `service` (provided by another module) through the kernel. */
  request(service: string, method: string, params?: unknown): Promise<unknown> {
    const id = `r-${++this.#next}`;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      send({ type: "rpc_request", id, service, method, params });
    });
  }

  /** Serves the kernel until it closes stdin or sends `shutdown`. */
  async run(): Promise<void> {
    for await (const msg of messages()) {
      this.#handle(msg).catch((e) => this.log("error", String(e)));
    }
    Deno.exit(0);
  }

  async #handle(msg: KernelMessage): Promise<void> {
    switch (msg.type) {
      case "init":
        this.workspacePath = msg.workspacePath;
        await this.onInit();
        send({ type: "ready" });
        break;
      case "ping":
        send({ type: "pong" });
        break;
      case "deps_ready":
        await this.onDepsReady();
        break;
      case "shutdown":
        Deno.exit(0);
        break;
      case "deliver":
        try {
          await this.onMessage(msg.topic, msg.payload);
          send({ type: "ack", id: msg.id });
        } catch (e) {
          send({ type: "nack", id: msg.id, error: String(e) });
        }
        break;
      case "rpc_request":
        try {
          send({ type: "rpc_response", id: msg.id, result: await this.onRequest(msg.method, msg.params) });
        } catch (e) {
          send({ type: "rpc_response", id: msg.id, error: String(e) });
        }
        break;
      case "rpc_response": {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error !== undefined && msg.error !== null) p?.reject(new Error(msg.error));
        else p?.resolve(msg.result);
        break;
      }
    }
  }
}
