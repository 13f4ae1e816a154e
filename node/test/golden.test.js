// The golden wire vectors (testdata/golden, written by tests/golden_cases.py with deterministic
// serialization) decode and re-encode byte for byte with the TypeScript bindings; their canonical
// JSON parses to the same message; every invalid vector (testdata/invalid) breaks the rule its
// manifest names.
//
// Byte-for-byte holds because protobuf-es writes fields in field-number order and map entries
// (Error.metadata, Struct fields) in the order it decoded them, which for these vectors is the
// sorted order of Python's deterministic serialization. One inherent limit: map keys are held in
// a plain JS object, and JS enumerates integer-like keys ("9", "10") first, in numeric order, so a
// vector with such keys would re-encode in a different (equally valid) order than Python's
// string-sorted one. No vector has such keys; keep it that way, or compare those semantically.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import { equals, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";

import { ErrorSchema } from "../gen/asyncplugin/v1/error_pb.js";
import { InvokeRequestSchema, InvokeResponseSchema } from "../gen/asyncplugin/v1/plugin_pb.js";
import { TaskSchema } from "../gen/asyncplugin/v1/task_pb.js";
import { decodeResponse, ProtocolViolation, responseViolations } from "../dist/validate.js";
import { repoPath } from "./helpers.js";

/** The message type of a vector, from its file name's prefix (as in tests/golden_cases.py). */
const MESSAGE_TYPES = {
  request: InvokeRequestSchema,
  response: InvokeResponseSchema,
  task: TaskSchema,
  error: ErrorSchema,
};

const GOLDEN_DIR = repoPath("testdata", "golden");
const INVALID_DIR = repoPath("testdata", "invalid");

const goldenNames = readdirSync(GOLDEN_DIR)
  .filter((f) => f.endsWith(".binpb"))
  .map((f) => f.slice(0, -".binpb".length))
  .sort();

function schemaFor(name) {
  const schema = MESSAGE_TYPES[name.split("_", 1)[0]];
  assert.ok(schema, `no message type for vector ${name}`);
  return schema;
}

describe("golden vectors", () => {
  test("there are vectors to check", () => {
    assert.ok(goldenNames.length >= 11, `only ${goldenNames.length} golden vectors`);
  });

  for (const name of goldenNames) {
    describe(name, () => {
      const schema = schemaFor(name);
      const wire = new Uint8Array(readFileSync(join(GOLDEN_DIR, `${name}.binpb`)));

      test("re-encodes byte for byte", () => {
        const message = fromBinary(schema, wire);
        assert.deepEqual(Buffer.from(toBinary(schema, message)), Buffer.from(wire));
      });

      test("its canonical JSON parses to the same message", () => {
        const json = JSON.parse(readFileSync(join(GOLDEN_DIR, `${name}.json`), "utf8"));
        const fromWire = fromBinary(schema, wire);
        const parsed = fromJson(schema, json);
        assert.ok(equals(schema, parsed, fromWire), "fromJson(json) != fromBinary(binpb)");
        // And the JSON-parsed message encodes to the same bytes (no field lost or reordered).
        assert.deepEqual(Buffer.from(toBinary(schema, parsed)), Buffer.from(wire));
      });

      if (schema === InvokeResponseSchema) {
        test("is a valid answer", () => {
          const message = fromBinary(schema, wire);
          const cancelRequested = name === "response_cancelled";
          assert.deepEqual(
            responseViolations(message, { cancelRequested }).map((v) => v.rule),
            [],
          );
        });
      }
    });
  }
});

describe("invalid vectors", () => {
  const manifest = JSON.parse(readFileSync(join(INVALID_DIR, "manifest.json"), "utf8"));
  const files = readdirSync(INVALID_DIR)
    .filter((f) => f.endsWith(".binpb"))
    .map((f) => f.slice(0, -".binpb".length))
    .sort();

  test("the manifest lists every invalid vector", () => {
    assert.deepEqual(Object.keys(manifest).sort(), files);
  });

  for (const [name, entry] of Object.entries(manifest)) {
    test(`${name} is rejected with ${entry.rule}`, () => {
      assert.equal(entry.message, "asyncplugin.v1.InvokeResponse");
      const wire = new Uint8Array(readFileSync(join(INVALID_DIR, `${name}.binpb`)));
      assert.throws(
        () => decodeResponse(wire),
        (err) => err instanceof ProtocolViolation && err.rule === entry.rule,
      );
      // The named rule is the first one broken (the manifest's promise).
      const rules = responseViolations(fromBinary(InvokeResponseSchema, wire)).map((v) => v.rule);
      assert.equal(rules[0], entry.rule, `violations: ${rules.join(", ")}`);
    });
  }
});
