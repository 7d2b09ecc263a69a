// Logs what arrives on `demo:formatted`. Before it is ready it probes, through `sh`, `rm` and
// `mv` (which run inside its sandbox), what it can do in the home and beside it, and logs
// `probe <name> allowed|denied` for each.
import { Module } from "@pons/sdk";

type Probe = [name: string, script: string, path: string];

class Subscriber extends Module {
  protected override async onInit(): Promise<void> {
    const home = this.workspacePath;
    const sdk = new URL(import.meta.resolve("@pons/sdk")).pathname;
    const dir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
    const probes: Probe[] = [
      ["read-sdk", ': < "$1"', sdk],
      ["read-own-entry", ': < "$1"', new URL(import.meta.url).pathname],
      ["read-deno-json", ': < "$1"', `${home}/deno.json`],
      ["read-config", ': < "$1"', `${home}/config.yaml`],
      ["read-permissions", ': < "$1"', `${home}/permissions.yaml`],
      ["read-lock", ': < "$1"', `${home}/deno.lock`],
      ["read-other-module", ': < "$1"', `${home}/modules/provider/runner.ts`],
      ["append-config", ': >> "$1"', `${home}/config.yaml`],
      ["append-lock", ': >> "$1"', `${home}/deno.lock`],
      ["create-in-home", ': > "$1"', `${home}/intruder.txt`],
      ["remove-permissions", 'rm -f -- "$1"', `${home}/permissions.yaml`],
      ["rename-lock", 'mv -- "$1" "$1.moved"', `${home}/deno.lock`],
      ["append-own-lock", ': >> "$1"', `${dir}/deno.lock`],
      ["rename-own-lock", 'mv -- "$1" "$1.moved"', `${dir}/deno.lock`],
      ["create-in-own-dir", ': > "$1"', `${dir}/intruder.txt`],
    ];
    for (const [name, script, path] of probes) {
      const out = await new Deno.Command("sh", {
        args: ["-c", script, "probe", path],
        stdout: "null",
        stderr: "piped",
      }).output();
      const verdict = out.success ? "allowed" : "denied";
      this.log("info", `probe ${name} ${verdict}`, {
        path,
        stderr: new TextDecoder().decode(out.stderr).trim(),
      });
    }
  }

  protected override onMessage(_topic: string, payload: unknown): void {
    this.log("info", `subscriber got ${(payload as { text: string }).text}`);
  }
}

new Subscriber().run();
