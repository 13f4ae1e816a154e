// The engine service bindings (asyncplugin.engine.v1) load in Node.js and round-trip: a client
// in TypeScript can submit tasks and a Node plugin can complete them with the token it receives
// in RequestContext.
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";

import {
  CompleteTaskRequestSchema,
  EngineService,
  SubmitTaskRequestSchema,
} from "../gen/asyncplugin/engine/v1/engine_pb.js";
import { RequestContextSchema } from "../gen/asyncplugin/v1/plugin_pb.js";

test("EngineService declares every RPC", () => {
  assert.deepEqual(Object.keys(EngineService.method).sort(), [
    "cancelTask",
    "completeTask",
    "getTask",
    "listTasks",
    "submitTask",
    "updateTask",
    "watchTask",
  ]);
  assert.equal(EngineService.method.watchTask.methodKind, "server_streaming");
});

test("a submit request round-trips with labels and a request id", () => {
  const request = create(SubmitTaskRequestSchema, {
    target: "127.0.0.1:50051",
    method: "/asyncplugin.v1.PluginService/Invoke",
    payload: new Uint8Array([1, 2, 3]),
    labels: { team: "audio" },
    requestId: "r-1",
  });
  const decoded = fromBinary(SubmitTaskRequestSchema, toBinary(SubmitTaskRequestSchema, request));
  assert.ok(equals(SubmitTaskRequestSchema, request, decoded));
  assert.equal(decoded.labels.team, "audio");
});

test("a completion carries either data or an error envelope", () => {
  const request = create(CompleteTaskRequestSchema, {
    completionToken: "token",
    outcome: { case: "error", value: { message: "the remote job failed", code: "REMOTE" } },
  });
  const decoded = fromBinary(
    CompleteTaskRequestSchema,
    toBinary(CompleteTaskRequestSchema, request),
  );
  assert.equal(decoded.outcome.case, "error");
  assert.equal(decoded.outcome.value.code, "REMOTE");
});

test("RequestContext carries the engine address and completion token", () => {
  const context = create(RequestContextSchema, {
    taskId: "t",
    engineAddress: "127.0.0.1:7000",
    completionToken: "secret",
  });
  const decoded = fromBinary(RequestContextSchema, toBinary(RequestContextSchema, context));
  assert.equal(decoded.engineAddress, "127.0.0.1:7000");
  assert.equal(decoded.completionToken, "secret");
});
