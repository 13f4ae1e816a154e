#!/usr/bin/env node
// The Node.js asyncplugin server: the conformance scenario interpreter or the example plugin on
// @grpc/grpc-js.
//
//   node dist/server.js [--port 0] [--host 127.0.0.1] [--plugin conformance|example]
//                       [--break RULE] [--token TOKEN] [--job-ms 1500]
//
// Prints exactly one line, `listening on <host>:<port>`, to stdout once it serves (port 0: the OS
// picks a free port); logs go to stderr. SIGTERM or SIGINT shut it down gracefully: in-flight calls
// finish (up to 5 s), then it exits 0.

import * as grpc from "@grpc/grpc-js";
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { BREAKS, isBreak, type Break } from "./breaks.js";
import { interpretCall } from "./conformance.js";
import { EXAMPLE_PATHS, SpeechApi, transcriber } from "./example.js";
import { addEnvelopeMethods, INVOKE_PATH, SERVER_OPTIONS, type InvokeHandler } from "./plugin.js";

export type PluginName = "conformance" | "example";

export interface ServerConfig {
  plugin: PluginName;
  host?: string;
  port?: number;
  break?: Break;
  token?: string;
  /** How long the example's simulated remote jobs take, in milliseconds. */
  jobMs?: number;
  log?: (line: string) => void;
}

export interface RunningServer {
  server: grpc.Server;
  host: string;
  port: number;
  /** Graceful shutdown: refuses new calls, lets in-flight ones finish up to `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

/** Builds the grpc-js server for `config`, binds it and starts serving. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const host = config.host ?? "127.0.0.1";
  const server = new grpc.Server(SERVER_OPTIONS);
  let handler: InvokeHandler;
  let paths: readonly string[];
  if (config.plugin === "conformance") {
    const brk = config.break;
    handler = (request, context) => interpretCall(request, { break: brk, signal: context.signal });
    paths = [INVOKE_PATH];
  } else {
    handler = transcriber(new SpeechApi(config.jobMs ?? 1500));
    paths = EXAMPLE_PATHS;
  }
  addEnvelopeMethods(server, paths, handler, {
    // A deliberate break must reach the engine: do not stop it at our own answer check.
    validateAnswers: config.break === undefined,
    token: config.token,
    log: config.log,
  });
  const address = host.includes(":") ? `[${host}]:${config.port ?? 0}` : `${host}:${config.port ?? 0}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  return {
    server,
    host,
    port,
    close: (graceMs = 5000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

const USAGE = `usage: node dist/server.js [--port N] [--host H] [--plugin conformance|example]
                          [--break RULE] [--token TOKEN] [--job-ms MS]

  --port N        port to bind on --host (default 0: the OS picks one)
  --host H        address to bind (default 127.0.0.1)
  --plugin NAME   conformance: the scenario interpreter (asyncplugin.v1.PluginService/Invoke);
                  example: the transcriber example (PluginService/Invoke and
                  asyncplugin.examples.v1.TranscriberService/Transcribe)
  --break RULE    deliberately break one protocol rule (conformance plugin; answers are then not
                  checked before sending):
${Object.entries(BREAKS)
  .map(([name, what]) => `                    ${name}: ${what}`)
  .join("\n")}
  --token TOKEN   require metadata "authorization: Bearer TOKEN" on every call
  --job-ms MS     example: how long a simulated remote job takes (default 1500)
`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}`);
  process.exit(2);
}

/** The command line entry point. */
export async function main(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "0" },
        host: { type: "string", default: "127.0.0.1" },
        plugin: { type: "string", default: "conformance" },
        break: { type: "string" },
        token: { type: "string" },
        "job-ms": { type: "string", default: "1500" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port: not a port: ${values.port}`);
  const plugin = values.plugin;
  if (plugin !== "conformance" && plugin !== "example") fail(`--plugin: unknown plugin ${plugin}`);
  const brk = values.break;
  if (brk !== undefined && !isBreak(brk)) fail(`--break: unknown rule ${brk}`);
  if (brk !== undefined && plugin !== "conformance") fail("--break applies to --plugin conformance");
  const jobMs = Number(values["job-ms"]);
  if (!Number.isFinite(jobMs) || jobMs <= 0) fail(`--job-ms: not a duration: ${values["job-ms"]}`);

  const running = await startServer({
    plugin,
    host: values.host,
    port,
    break: brk,
    token: values.token,
    jobMs,
  });
  if (brk !== undefined) {
    process.stderr.write(`breaking rule deliberately: ${brk}: ${BREAKS[brk]}\n`);
  }
  process.stdout.write(`listening on ${running.host}:${running.port}\n`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${signal}: shutting down\n`);
    void running.close(5000).then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
