// The plugin server over real grpc-js on 127.0.0.1 (port 0), with a grpc-js client; and the CLI.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { ScenarioResultSchema } from "../gen/asyncplugin/conformance/v1/conformance_pb.js";
import { TranscribeInputSchema, TranscriptSchema } from "../gen/asyncplugin/examples/v1/transcriber_pb.js";
import {
  InvokeRequestSchema,
  InvokeResponseSchema,
  RequestContextSchema,
} from "../gen/asyncplugin/v1/plugin_pb.js";
import { TaskState } from "../gen/asyncplugin/v1/task_pb.js";
import { startServer } from "../dist/server.js";
import { responseViolations } from "../dist/validate.js";
import { request } from "./helpers.js";

const INVOKE = "/asyncplugin.v1.PluginService/Invoke";
const TRANSCRIBE = "/asyncplugin.examples.v1.TranscriberService/Transcribe";

function client(port) {
  return new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

/** One unary call; resolves with the InvokeResponse or rejects with the grpc-js ServiceError. */
function call(c, req, { path = INVOKE, metadata = new grpc.Metadata(), deadlineMs = 5000 } = {}) {
  const bytes = req instanceof Uint8Array ? req : toBinary(InvokeRequestSchema, req);
  return new Promise((resolve, reject) => {
    c.makeUnaryRequest(
      path,
      (b) => Buffer.from(b),
      (b) => fromBinary(InvokeResponseSchema, b),
      bytes,
      metadata,
      { deadline: Date.now() + deadlineMs },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

/** Plays the engine over gRPC, echoing the last RUNNING Task; returns every answer. */
async function driveRemote(c, data, { path, taskId = "t-1", maxChecks = 50, waitMs = 0 } = {}) {
  const answers = [];
  let status;
  for (let n = 0; n <= maxChecks; n++) {
    const req = create(InvokeRequestSchema, {
      data,
      context: create(RequestContextSchema, { taskId, idempotencyKey: `idem-${taskId}`, checkNumber: n }),
      status,
      isStatusCheck: n > 0,
    });
    const res = await call(c, req, { path });
    assert.deepEqual(responseViolations(res).map((v) => v.rule), []);
    answers.push(res);
    if (res.status?.state !== TaskState.RUNNING) break;
    status = res.status;
    if (waitMs) await new Promise((r) => setTimeout(r, waitMs));
  }
  return answers;
}

describe("conformance plugin over grpc-js", () => {
  let server;
  let c;
  const logged = [];
  before(async () => {
    server = await startServer({ plugin: "conformance", port: 0, log: (l) => logged.push(l) });
    c = client(server.port);
  });
  after(async () => {
    c.close();
    await server.close(1000);
  });

  test("binds 127.0.0.1 on an OS-picked port", () => {
    assert.equal(server.host, "127.0.0.1");
    assert.ok(server.port > 0);
  });

  test("a rotating scenario with progress runs to SUCCEEDED", async () => {
    const scenario = { name: "rot", checksBeforeDone: 3, rotateRemoteStatusInput: true, reportProgress: true, result: { ok: true } };
    const answers = await driveRemote(c, request(scenario).data, { taskId: "t-rot" });
    assert.equal(answers.length, 4);
    assert.deepEqual(answers[2].status.remoteStatusInput, { scenario: "rot", token: "t-rot:2" });
    const result = fromBinary(ScenarioResultSchema, answers[3].data);
    assert.equal(result.checkNumber, 3);
    assert.deepEqual(result.result, { ok: true });
    assert.equal(result.implementation, "asyncplugin-node/0.1.0");
  });

  test("500 concurrent calls are all answered", async () => {
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        call(c, request({ name: `s${i}`, checksBeforeDone: i % 3 }, { taskId: `t-${i}` })),
      ),
    );
    results.forEach((res, i) => {
      if (i % 3 === 0) assert.equal(fromBinary(ScenarioResultSchema, res.data).taskId, `t-${i}`);
      else assert.equal(res.status.state, TaskState.RUNNING);
    });
    assert.ok(Date.now() - started < 10_000);
  });

  test("a request that breaks a rule is answered INVALID_ARGUMENT naming it", async () => {
    const bad = request({ name: "x" }, { checkNumber: 1 }); // a status check without status
    await assert.rejects(call(c, bad), (err) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^STATUS_CHECK_WITHOUT_STATUS: /);
      assert.deepEqual(err.metadata.get("asyncplugin-rule"), ["STATUS_CHECK_WITHOUT_STATUS"]);
      return true;
    });
    await assert.rejects(call(c, new Uint8Array([0xff, 0xff])), (err) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^MALFORMED_MESSAGE: /);
      return true;
    });
  });

  test("a delay past the caller's deadline: DEADLINE_EXCEEDED, and the server keeps serving", async () => {
    const slow = request({ name: "slow", delay: durationFromMs(3000) });
    await assert.rejects(call(c, slow, { deadlineMs: 200 }), (err) => err.code === grpc.status.DEADLINE_EXCEEDED);
    const res = await call(c, request({ name: "after" }));
    assert.ok(res.data !== undefined);
  });

  test("a scenario that makes the plugin break a rule is refused, not sent (INTERNAL)", async () => {
    // fail_with an envelope without message: the answer would break ERROR_WITHOUT_MESSAGE.
    const bad = request({ name: "bad", failWith: {} });
    await assert.rejects(call(c, bad), (err) => {
      assert.equal(err.code, grpc.status.INTERNAL);
      assert.match(err.details, /^ERROR_WITHOUT_MESSAGE: /);
      return true;
    });
    assert.ok(logged.some((l) => l.includes("ERROR_WITHOUT_MESSAGE")));
  });
});

describe("--break over grpc-js", () => {
  test("running-without-remote-status-input reaches the client", async () => {
    const server = await startServer({ plugin: "conformance", break: "running-without-remote-status-input" });
    const c = client(server.port);
    try {
      const res = await call(c, request({ name: "b", checksBeforeDone: 1 }));
      assert.equal(res.status.state, TaskState.RUNNING);
      assert.deepEqual(responseViolations(res).map((v) => v.rule), ["RUNNING_WITHOUT_REMOTE_STATUS_INPUT"]);
    } finally {
      c.close();
      await server.close(1000);
    }
  });
});

describe("bearer token", () => {
  test("calls without the configured token are UNAUTHENTICATED", async () => {
    const server = await startServer({ plugin: "conformance", token: "s3cret" });
    const c = client(server.port);
    try {
      await assert.rejects(call(c, request({})), (err) => err.code === grpc.status.UNAUTHENTICATED);
      const md = new grpc.Metadata();
      md.set("authorization", "Bearer s3cret");
      assert.ok((await call(c, request({}), { metadata: md })).data !== undefined);
    } finally {
      c.close();
      await server.close(1000);
    }
  });
});

describe("example plugin (transcriber) over grpc-js", () => {
  let server;
  let c;
  before(async () => {
    server = await startServer({ plugin: "example", jobMs: 150 });
    c = client(server.port);
  });
  after(async () => {
    c.close();
    await server.close(1000);
  });

  const input = (audioUrl, language = "en-GB") =>
    toBinary(TranscribeInputSchema, create(TranscribeInputSchema, { audioUrl, language }));

  for (const path of [INVOKE, TRANSCRIBE]) {
    test(`${path}: RUNNING with the remote job id, progress and a hint, then SUCCEEDED`, async () => {
      const answers = await driveRemote(c, input("https://example.com/talk.wav"), { path, taskId: `t-${path}`, waitMs: 40 });
      const first = answers[0].status;
      assert.equal(first.state, TaskState.RUNNING);
      assert.match(first.remoteStatusInput.remote_job_id, /^j-\d+$/);
      assert.ok(first.checkAfter !== undefined);
      assert.ok(first.progress.fraction >= 0 && first.progress.fraction < 1);
      const last = answers.at(-1);
      const transcript = fromBinary(TranscriptSchema, last.data);
      assert.match(transcript.text, /talk\.wav/);
      assert.equal(transcript.wordCount, transcript.text.split(" ").length);
    });
  }

  test("an unsupported format fails on a status check with a wrapped remote error", async () => {
    const answers = await driveRemote(c, input("https://example.com/talk.ogg"), { taskId: "t-ogg", waitMs: 40 });
    const last = answers.at(-1).status;
    assert.ok(answers.length >= 2);
    assert.equal(last.state, TaskState.FAILED);
    assert.equal(last.error.code, "UNSUPPORTED_AUDIO_FORMAT");
    assert.equal(last.error.wrapped.case, "wrappedError");
    assert.match(last.error.wrapped.value.wrapped.value, /422/);
  });

  test("an invalid URL fails on the initiating call", async () => {
    const [res] = await driveRemote(c, input("not a url"), { taskId: "t-bad" });
    assert.equal(res.status.state, TaskState.FAILED);
    assert.equal(res.status.error.code, "INVALID_AUDIO_URL");
    assert.equal(res.status.error.rpcCode, 3);
  });

  test("the same idempotency key does not start the job twice", async () => {
    const [a] = await driveRemote(c, input("https://example.com/x.mp3"), { taskId: "t-idem", maxChecks: 0 });
    const [b] = await driveRemote(c, input("https://example.com/x.mp3"), { taskId: "t-idem", maxChecks: 0 });
    assert.equal(a.status.remoteStatusInput.remote_job_id, b.status.remoteStatusInput.remote_job_id);
  });

  test("a cancel request stops the job: CANCELLED", async () => {
    const [first] = await driveRemote(c, input("https://example.com/long.flac"), { taskId: "t-cancel", maxChecks: 0 });
    const req = create(InvokeRequestSchema, {
      data: input("https://example.com/long.flac"),
      context: create(RequestContextSchema, { taskId: "t-cancel", checkNumber: 1 }),
      status: first.status,
      isStatusCheck: true,
      cancelRequested: true,
    });
    const res = await call(c, req);
    assert.equal(res.status.state, TaskState.CANCELLED);
  });
});

describe("CLI", () => {
  const serverJs = fileURLToPath(new URL("../dist/server.js", import.meta.url));

  test("prints exactly one 'listening on' line and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, [serverJs, "--port", "0", "--plugin", "conformance", "--break", "no-echo"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d) => (out += d));
    let err = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d) => (err += d));
    while (!out.includes("\n")) {
      await Promise.race([once(child.stdout, "data"), once(child, "exit").then(() => assert.fail(`exited early: ${err}`))]);
    }
    const match = /^listening on 127\.0\.0\.1:(\d+)\n$/.exec(out);
    assert.ok(match, `stdout: ${JSON.stringify(out)}`);
    const c = client(Number(match[1]));
    const res = await call(c, request({ name: "cli", checksBeforeDone: 2, rotateRemoteStatusInput: true }, { taskId: "t-cli" }));
    assert.equal(res.status.remoteStatusInput.token, "t-cli:0");
    c.close();
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    assert.equal(code, 0);
    assert.equal(out.split("\n").filter(Boolean).length, 1, "one line on stdout");
    assert.match(err, /no-echo/);
  });

  test("an unknown --break is a usage error (exit 2)", async () => {
    const child = spawn(process.execPath, [serverJs, "--break", "nope"], { stdio: ["ignore", "pipe", "pipe"] });
    const [code] = await once(child, "exit");
    assert.equal(code, 2);
  });
});
