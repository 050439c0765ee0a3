#!/usr/bin/env node
// Golden bytes of the official Socket.IO msgpack parser
// (socket.io-msgpack-parser 3.0.2, msgpack by notepack.io 2.2.0) for the
// wsio test tests/socketio_msgpack.rs.
//
//   node sio-msgpack-golden.js
//
// Prints one tab-separated line per case, then `N cases`:
//
//   encode NAME HEX accept CANON    a packet as the official server (or, for
//                                   CONNECT without auth, client) builds it,
//                                   encoded by the official Encoder
//   edge   NAME HEX accept CANON    a message the official Decoder accepts
//   edge   NAME HEX refuse ERROR    a message the official Decoder refuses
//
// CANON is the decoded packet as JSON: {type, nsp, data?, id?} (id only on
// EVENT and ACK, which use it), with each value as JSON sees it (undefined
// left out of objects and null in arrays, a Date as its ISO string or
// null), binary as {"$bin": HEX} and non-finite numbers as {"$n": "NaN"}.
"use strict";

const parser = require("socket.io-msgpack-parser");
const notepack = require("notepack.io");

// ----- packets as socket.io 4.8 builds them (member order matters) ----------

// Server: socket.js `_onconnect`, then `packet()` adds nsp.
const connectAnswer = (nsp, data) => ({ type: 0, data, nsp });
// Client: socket.js `_sendConnectPacket`; `data` may be undefined.
const clientConnect = (nsp, data) => ({ type: 0, data, nsp });
const disconnect = (nsp) => ({ type: 1, nsp });
// Server: socket.js `emit` (id only with an ack), then nsp.
const event = (nsp, data, id) => {
  const p = { type: 2, data };
  if (id !== undefined) p.id = id;
  p.nsp = nsp;
  return p;
};
// Server: socket.js `ack()`.
const ack = (nsp, id, data) => ({ id, type: 3, data, nsp });
// Server: client.js, a refused namespace.
const connectError = (nsp, data) => ({ type: 4, nsp, data });

const ascii = (n) => "x".repeat(n);
const bytes = (n) => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));
const arrayBuffer = (n) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7) % 256;
  return b.buffer;
};

const map16 = {};
for (let i = 0; i < 16; i++) map16[`k${i}`] = i;
const map32 = {};
for (let i = 0; i < 65536; i++) map32[`k${i}`] = i % 3;

const packets = [
  ["connect_sid", connectAnswer("/", { sid: "oSO0OpakMV_3jnilAAAA" })],
  ["connect_sid_pid", connectAnswer("/custom", { sid: "oSO0OpakMV_3jnilAAAA", pid: "YHcX2sdAF1z-mfOW" })],
  // The official server's answer without connection state recovery.
  ["connect_pid_undefined", connectAnswer("/", { sid: "oSO0OpakMV_3jnilAAAA", pid: undefined })],
  ["connect_auth", clientConnect("/custom", { token: "abc", n: 1 })],
  ["connect_no_auth", clientConnect("/", undefined)],
  ["connect_no_auth_custom", clientConnect("/custom", undefined)],
  ["disconnect", disconnect("/")],
  ["disconnect_custom", disconnect("/custom")],
  ["event_small", event("/", ["message", "hello", 1])],
  ["event_name_only", event("/", ["ping"])],
  ["event_ack", event("/custom", ["hi", "there"], 12)],
  ["event_ack_zero", event("/", ["hi"], 0)],
  ["event_ack_large", event("/", ["hi"], 4294967301)],
  ["event_nsp_unicode", event("/ñ-日本", ["x"])],
  [
    "event_uints",
    event("/", ["uints", 0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 2 ** 53 - 1, 2 ** 63, 2 ** 64 - 2048]),
  ],
  [
    "event_negative_ints",
    event("/", ["ints", -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -(2 ** 53 - 1), -(2 ** 63)]),
  ],
  ["event_floats", event("/", ["floats", 1.5, -0.25, 0.1, -1e-300, 5e-324, 1e-7, 123456.789, -2.5])],
  // notepack.io writes whole doubles from 2^64 up as wrapped integers (these
  // read back as 0); wsio keeps them as float 64. Decoded only.
  ["event_huge_whole_floats", event("/", ["huge", 2 ** 64, 1e300, 1.7976931348623157e308])],
  ["event_infinities", event("/", ["inf", Infinity, -Infinity])],
  ["event_literals", event("/", ["lit", null, true, false])],
  [
    "event_strings",
    event("/", ["strings", "", "a", ascii(31), ascii(32), ascii(255), ascii(256), ascii(65535), ascii(65536)]),
  ],
  ["event_unicode", event("/", ["unicode", "héllo wörld", "日本語", "😀", "a\u0000b\n\"\\", "\u2028\u00ff"])],
  ["event_nested", event("/", ["nested", { a: { b: [1, { c: null }], d: true }, e: [[], [[]]], f: "g" }])],
  ["event_key_order", event("/", ["keys", { b: 1, 2: 2, 1: 3, a: 4, "01": 5, 4294967295: 6, 4294967294: 7 }])],
  ["event_empty_containers", event("/", ["empty", [], {}, [{}], { a: [] }])],
  ["event_array16", event("/", ["arr", Array.from({ length: 16 }, (_, i) => i)])],
  ["event_array32", event("/", ["arr", new Array(65536).fill(7)])],
  ["event_args16", event("/", ["many", ...Array.from({ length: 15 }, (_, i) => i)])],
  ["event_map16", event("/", ["map", map16])],
  ["event_map32", event("/", ["map", map32])],
  ["event_buffers", event("/", ["bin", Buffer.alloc(0), Buffer.from([1, 2, 3]), bytes(255), bytes(256)])],
  ["event_buffer_64k", event("/", ["bin", bytes(65536)], 3)],
  ["event_buffer_nested", event("/", ["bin", { file: Buffer.from("abc"), meta: { parts: [Buffer.from([0xff])] } }])],
  // Decoded only: wsio writes binary as bin, as a Node Buffer.
  ["event_arraybuffer", event("/", ["ab", arrayBuffer(0), arrayBuffer(1), arrayBuffer(3), arrayBuffer(256)])],
  ["event_arraybuffer_64k", event("/", ["ab", arrayBuffer(65536)])],
  ["event_uint8array", event("/", ["u8", new Uint8Array([4, 5, 6])])],
  [
    "event_date",
    event("/", [
      "date",
      new Date(0),
      new Date(Date.UTC(2024, 1, 29, 13, 5, 7, 89)),
      new Date(-1),
      new Date(Date.UTC(-1, 0, 1)),
      new Date(Date.UTC(10000, 0, 1)),
      new Date(8.64e15),
      new Date(-8.64e15),
    ]),
  ],
  ["event_undefined", event("/", ["undef", undefined, { a: undefined, b: 1 }])],
  ["ack", ack("/", 5, ["ok", 1])],
  ["ack_empty", ack("/custom", 0, [])],
  ["ack_binary", ack("/", 7, [Buffer.from([9, 8, 7]), { n: -1.5 }])],
  ["connect_error", connectError("/random", { message: "Invalid namespace" })],
  ["connect_error_data", connectError("/custom", { message: "not authorized", data: { code: 42 } })],
  ["connect_error_string", connectError("/", "not authorized")],
];

// ----- messages for the decoder ---------------------------------------------------

const enc = (v) => notepack.encode(v);
const hex = (...parts) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p.replace(/ /g, ""), "hex") : p)));
const str = (s) => enc(s);
// A packet map from [key bytes, value bytes] pairs, in order.
const map = (...entries) => {
  if (entries.length >= 16) throw new Error("fixmap only");
  return hex((0x80 | entries.length).toString(16), ...entries.flat());
};
const T = str("type");
const N = str("nsp");
const D = str("data");
const I = str("id");
const root = [N, str("/")];
const evt = (data) => [D, data];
const okEvent = map([T, enc(2)], root, evt(enc(["x"])));
const deep = (levels) => hex("91".repeat(levels - 1), "90");

const edges = [
  ["empty", hex("")],
  ["ok_event", okEvent],
  ["ok_trailing_byte", hex(okEvent, "c0")],
  ["ok_truncated", okEvent.subarray(0, okEvent.length - 1)],
  ["not_map_array", enc([2, "/", ["x"]])],
  ["not_map_string", enc("2")],
  ["not_map_nil", hex("c0")],
  ["reserved_marker", map([T, enc(2)], root, evt(hex("92 a1 78 c1")))],
  ["type_missing", map(root, evt(enc(["x"])))],
  ["type_5", map([T, enc(5)], root, evt(enc(["x"])))],
  ["type_6", map([T, enc(6)], root, [I, enc(1)], evt(enc([])))],
  ["type_negative", map([T, enc(-1)], root, evt(enc(["x"])))],
  ["type_float_whole", map([T, hex("cb 40 00 00 00 00 00 00 00")], root, evt(enc(["x"])))],
  ["type_float32_whole", map([T, hex("ca 40 00 00 00")], root, evt(enc(["x"])))],
  ["type_uint64", map([T, hex("cf 00 00 00 00 00 00 00 02")], root, evt(enc(["x"])))],
  ["type_negative_zero", map([T, hex("cb 80 00 00 00 00 00 00 00")], root)],
  ["type_float_fraction", map([T, enc(2.5)], root, evt(enc(["x"])))],
  ["type_nan", map([T, hex("cb 7f f8 00 00 00 00 00 00")], root, evt(enc(["x"])))],
  ["type_string", map([T, enc("2")], root, evt(enc(["x"])))],
  ["type_undefined", map([T, hex("d4 00 00")], root, evt(enc(["x"])))],
  ["type_repeated_last_good", map([T, enc(9)], [T, enc(2)], root, evt(enc(["x"])))],
  ["type_repeated_last_bad", map([T, enc(2)], [T, enc(9)], root, evt(enc(["x"])))],
  ["nsp_missing", map([T, enc(2)], evt(enc(["x"])))],
  ["nsp_number", map([T, enc(2)], [N, enc(1)], evt(enc(["x"])))],
  ["nsp_empty", map([T, enc(2)], [N, enc("")], evt(enc(["x"])))],
  ["nsp_no_slash", map([T, enc(2)], [N, enc("abc")], evt(enc(["x"])))],
  ["nsp_binary", map([T, enc(2)], [N, enc(Buffer.from("/"))], evt(enc(["x"])))],
  ["connect_nil", map([T, enc(0)], root, [D, enc(null)])],
  ["connect_array", map([T, enc(0)], root, [D, enc([])])],
  ["connect_string", map([T, enc(0)], root, [D, enc("x")])],
  ["connect_binary", map([T, enc(0)], root, [D, enc(Buffer.from("x"))])],
  ["connect_absent", map([T, enc(0)], root)],
  ["connect_undefined", map([T, enc(0)], root, [D, hex("d4 00 00")])],
  ["connect_date", map([T, enc(0)], root, [D, enc(new Date(0))])],
  ["disconnect_map", map([T, enc(1)], root, [D, enc({})])],
  ["disconnect_nil", map([T, enc(1)], root, [D, enc(null)])],
  ["disconnect_undefined", map([T, enc(1)], root, [D, hex("d4 00 00")])],
  ["event_map", map([T, enc(2)], root, evt(enc({ 0: "x" })))],
  ["event_absent", map([T, enc(2)], root)],
  ["event_empty", map([T, enc(2)], root, evt(enc([])))],
  ["event_number_name", map([T, enc(2)], root, evt(enc([1, "x"])))],
  ["event_reserved_name", map([T, enc(2)], root, evt(enc(["connect"])))],
  ["event_options", map([T, enc(2)], evt(enc(["x"])), [str("options"), enc({ compress: true })], root)],
  ["ack_no_id", map([T, enc(3)], root, evt(enc([])))],
  ["ack_string", map([T, enc(3)], root, [I, enc(1)], evt(enc("x")))],
  ["id_string", map([T, enc(2)], root, evt(enc(["x"])), [I, enc("1")])],
  ["id_nil", map([T, enc(2)], root, evt(enc(["x"])), [I, enc(null)])],
  ["id_fraction", map([T, enc(2)], root, evt(enc(["x"])), [I, enc(1.5)])],
  ["id_float_whole", map([T, enc(2)], root, evt(enc(["x"])), [I, hex("cb 40 08 00 00 00 00 00 00")])],
  ["id_undefined", map([T, enc(2)], root, evt(enc(["x"])), [I, hex("d4 00 00")])],
  ["id_negative", map([T, enc(2)], root, evt(enc(["x"])), [I, enc(-1)])],
  ["id_uint64_max", map([T, enc(2)], root, evt(enc(["x"])), [I, hex("cf ff ff ff ff ff ff ff ff")])],
  ["id_on_connect", map([T, enc(0)], root, [I, enc(5)])],
  ["id_negative_on_disconnect", map([T, enc(1)], root, [I, enc(-5)])],
  ["id_string_on_connect", map([T, enc(0)], root, [I, enc("5")])],
  ["connect_error_number", map([T, enc(4)], root, [D, enc(1)])],
  ["connect_error_absent", map([T, enc(4)], root)],
  ["connect_error_array", map([T, enc(4)], root, [D, enc(["x"])])],
  ["key_integers", map([T, enc(2)], root, evt(hex("92 a1 78 82 01 a1 61 00 a1 62")))],
  ["key_scalars", map([T, enc(2)], root, evt(hex("92 a1 78 86 c0 01 c3 02 c2 03 cb 3f f8 00 00 00 00 00 00 04 d4 00 00 05 d0 9c 06")))],
  ["key_float_nan", map([T, enc(2)], root, evt(hex("92 a1 78 81 cb 7f f8 00 00 00 00 00 00 01")))],
  ["key_float_exponent", map([T, enc(2)], root, evt(hex("92 a1 78 81 cb 44 b5 2d 02 c7 e1 4a f6 01")))],
  ["key_uint64_max", map([T, enc(2)], root, evt(hex("92 a1 78 81 cf ff ff ff ff ff ff ff ff 01")))],
  ["key_repeated", map([T, enc(2)], root, evt(hex("92 a1 78 83 a1 61 01 a1 62 02 a1 61 03")))],
  ["key_repeated_undefined", map([T, enc(2)], root, evt(hex("92 a1 78 83 a1 61 01 a1 62 02 a1 61 d4 00 00")))],
  ["key_proto", map([T, enc(2)], root, evt(hex("92 a1 78 82 a9", Buffer.from("__proto__"), "81 a1 78 01 a1 79 02")))],
  ["key_array", map([T, enc(2)], root, evt(hex("92 a1 78 81 92 01 02 03")))],
  ["key_binary", map([T, enc(2)], root, evt(hex("92 a1 78 81 c4 01 61 03")))],
  ["key_map", map([T, enc(2)], root, evt(hex("92 a1 78 81 80 03")))],
  ["key_proto_top", hex("81 a9", Buffer.from("__proto__"), okEvent)],
  ["utf8_invalid", map([T, enc(2)], root, evt(hex("92 a1 78 a3 ff fe 41")))],
  ["utf8_surrogate", map([T, enc(2)], root, evt(hex("92 a1 78 a3 ed a0 80")))],
  ["utf8_overlong", map([T, enc(2)], root, evt(hex("92 a1 78 a2 c0 80")))],
  ["utf8_cut", map([T, enc(2)], root, evt(hex("92 a1 78 a3 41 e2 82")))],
  ["utf8_name", map([T, enc(2)], root, evt(hex("91 a2 ff 41")))],
  ["str8_short_length", map([T, enc(2)], root, evt(hex("92 a1 78 d9 05 61 61")))],
  ["str32_huge", map([T, enc(2)], root, evt(hex("92 a1 78 db ff ff ff ff 61")))],
  ["bin32_huge", map([T, enc(2)], root, evt(hex("92 a1 78 c6 ff ff ff ff 61")))],
  // Not ext 32 with a huge length: notepack.io allocates and fills an
  // ArrayBuffer of that size first (minutes and 4 GiB for 2^32 - 1).
  ["ext32_short", map([T, enc(2)], root, evt(hex("92 a1 78 c9 00 00 00 05 00 61")))],
  ["array32_huge", map([T, enc(2)], root, evt(hex("92 a1 78 dd ff ff ff ff c0")))],
  ["map32_huge", map([T, enc(2)], root, evt(hex("92 a1 78 df ff ff ff ff c0 c0")))],
  ["packet_map32_huge", hex("df ff ff ff ff", T, enc(2))],
  ["float32", map([T, enc(2)], root, evt(hex("94 a1 78 ca 3f c0 00 00 ca 3d cc cc cd ca 7f c0 00 00")))],
  ["float_negative_zero", map([T, enc(2)], root, evt(hex("92 a1 78 cb 80 00 00 00 00 00 00 00")))],
  ["float_nan", map([T, enc(2)], root, evt(hex("92 a1 78 cb 7f f8 00 00 00 00 00 00")))],
  ["uint64_max", map([T, enc(2)], root, evt(hex("92 a1 78 cf ff ff ff ff ff ff ff ff")))],
  ["int64_min", map([T, enc(2)], root, evt(hex("92 a1 78 d3 80 00 00 00 00 00 00 00")))],
  ["int64_positive", map([T, enc(2)], root, evt(hex("92 a1 78 d3 00 00 00 00 00 00 00 05")))],
  ["int8_positive", map([T, enc(2)], root, evt(hex("92 a1 78 d0 05")))],
  ["ext8_type0", map([T, enc(2)], root, evt(hex("92 a1 78 c7 02 00 aa bb")))],
  ["ext16_type0", map([T, enc(2)], root, evt(hex("92 a1 78 c8 00 02 00 aa bb")))],
  ["ext8_type5", map([T, enc(2)], root, evt(hex("92 a1 78 c7 02 05 aa bb")))],
  ["ext8_type_negative", map([T, enc(2)], root, evt(hex("92 a1 78 c7 01 ff aa")))],
  ["fixext1_type0_data", map([T, enc(2)], root, evt(hex("93 a1 78 d4 00 07 01")))],
  ["fixext1_type3", map([T, enc(2)], root, evt(hex("92 a1 78 d4 03 07")))],
  ["fixext1_cut", map([T, enc(2)], root, evt(hex("92 a1 78 d4 00")))],
  ["fixext2_type0", map([T, enc(2)], root, evt(hex("92 a1 78 d5 00 01 02")))],
  ["fixext4_timestamp", map([T, enc(2)], root, evt(hex("92 a1 78 d6 ff 00 00 00 01")))],
  ["fixext8_date_invalid", map([T, enc(2)], root, evt(hex("92 a1 78 d7 00 00 1e b2 08 c2 dc 00 01")))],
  ["fixext8_date_invalid_negative", map([T, enc(2)], root, evt(hex("92 a1 78 d7 00 ff e1 4d f7 3d 23 ff ff")))],
  ["fixext8_date_int64_min", map([T, enc(2)], root, evt(hex("92 a1 78 d7 00 80 00 00 00 00 00 00 00")))],
  ["fixext8_type1", map([T, enc(2)], root, evt(hex("92 a1 78 d7 01 00 00 00 00 00 00 00 00")))],
  ["fixext16_type0", map([T, enc(2)], root, evt(hex("92 a1 78 d8 00", "00".repeat(16))))],
  ["undefined_in_array", map([T, enc(2)], root, evt(hex("93 a1 78 d4 00 00 01")))],
  ["deep_127", map([T, enc(2)], root, evt(hex("92 a1 78", deep(126))))],
  ["deep_128", map([T, enc(2)], root, evt(hex("92 a1 78", deep(127))))],
];

// ----- output -----------------------------------------------------------------------

function canon(v, inArray) {
  if (v === undefined) return inArray ? null : undefined;
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : { $n: String(v) };
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("hex") };
  if (v instanceof Date) return v.toJSON();
  if (Array.isArray(v)) return v.map((e) => canon(e, true));
  const o = {};
  for (const k of Object.keys(v)) {
    const c = canon(v[k], false);
    if (c !== undefined) o[k] = c;
  }
  return o;
}

function canonPacket(p) {
  const o = { type: p.type, nsp: p.nsp };
  if (p.data !== undefined) o.data = canon(p.data, false);
  if (p.id !== undefined && (p.type === 2 || p.type === 3)) o.id = p.id;
  return JSON.stringify(o);
}

// The official decoder, as a server or client runs it on one message.
function officialDecode(buf) {
  const d = new parser.Decoder();
  let out;
  d.on("decoded", (p) => {
    out = p;
  });
  d.add(buf);
  return out;
}

function line(kind, name, buf) {
  let verdict;
  try {
    verdict = `accept\t${canonPacket(officialDecode(buf))}`;
  } catch (e) {
    verdict = `refuse\t${String(e && e.message).replace(/\s+/g, " ")}`;
  }
  return `${kind}\t${name}\t${buf.toString("hex")}\t${verdict}\n`;
}

const encoder = new parser.Encoder();
const names = new Set();
let count = 0;
const out = [];
for (const [name, packet] of packets) {
  if (names.has(name)) throw new Error(`duplicate case ${name}`);
  names.add(name);
  const encoded = encoder.encode(packet);
  if (encoded.length !== 1) throw new Error(`${name}: ${encoded.length} messages`);
  out.push(line("encode", name, Buffer.from(encoded[0])));
  count++;
}
for (const [name, buf] of edges) {
  if (names.has(name)) throw new Error(`duplicate case ${name}`);
  names.add(name);
  out.push(line("edge", name, buf));
  count++;
}
out.push(`${count} cases\n`);
process.stdout.write(out.join(""));
