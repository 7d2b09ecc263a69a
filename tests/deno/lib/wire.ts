// The pons wire protocol as a module sees it: newline-delimited compact JSON, kernel messages on
// stdin, module messages on stdout (specs/protocol.md). Only the messages the test modules use.

export type KernelMessage =
  | { type: "install" }
  | { type: "init"; protocolVersion: string; config: Record<string, unknown>; workspacePath: string }
  | { type: "deps_ready" }
  | { type: "service_available"; service: string }
  | { type: "shutdown" }
  | { type: "ping" }
  | { type: "deliver"; id: string; topic: string; payload?: unknown }
  | { type: "config:update"; config: Record<string, unknown>; changedSections: string[] }
  | { type: "rpc_request"; id: string; from: string; service: string; method: string; params?: unknown }
  | { type: "rpc_response"; id: string; result?: unknown; error?: string };

export type ModuleMessage =
  | { type: "ready" }
  | { type: "pong" }
  | { type: "ack"; id: string }
  | { type: "nack"; id: string; error: string }
  | { type: "log"; level: string; msg: string; data?: Record<string, unknown> }
  | { type: "publish"; topic: string; payload?: unknown }
  | { type: "rpc_request"; id: string; service: string; method: string; params?: unknown }
  | { type: "rpc_response"; id: string; result?: unknown; error?: string };

const encoder = new TextEncoder();

/** Writes one message as one line on stdout. */
export function send(msg: ModuleMessage): void {
  const bytes = encoder.encode(JSON.stringify(msg) + "\n");
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}

/** Every kernel message on stdin, in order, until the kernel closes it. */
export async function* messages(): AsyncGenerator<KernelMessage> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of Deno.stdin.readable) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      try {
        yield JSON.parse(line) as KernelMessage;
      } catch {
        // not JSON: ignored, as the kernel ignores a module's bad lines
      }
    }
  }
}
