#!/usr/bin/env node
// conformance: orderpipe's events as a third-party consumer reads them, with the official
// CloudEvents SDK for JavaScript (tests/system/test_cloudevents.sh).
//
//   node conformance.js read AMQP_URL SCHEMA_DIR QUEUE...
//     Takes every message off each QUEUE and reads it as a receiver does: by its content type
//     (structured mode is application/cloudevents+json; otherwise binary mode, the attributes in
//     "cloudEvents:" headers, as the AMQP protocol binding says). The SDK has no AMQP binding, so
//     the message goes through its HTTP binding, which recognises the modes by the same rule:
//     content-type stays content-type, a "cloudEvents:X" (or "cloudEvents_X") header becomes
//     "ce-X". Each event must pass the SDK's strict validation, name its JSON schema in
//     dataschema (the schema's $id), carry the order id in subject, and have data valid against SCHEMA_DIR/TYPE.json.
//     Prints one JSON line per message, then a summary line; exits 1 if any message failed.
//
//   node conformance.js publish-binary AMQP_URL TYPE ORDER_ID DATA_JSON
//     Publishes a TYPE event built by the SDK, serialised in binary mode by its HTTP binding
//     (attributes as ce- headers, data as the body), with the headers renamed to the AMQP
//     binding's "cloudEvents:" prefix, to orderpipe.events with TYPE as routing key; exits once
//     the broker confirms it.
"use strict";

const fs = require("fs");
const path = require("path");
const amqp = require("amqplib");
const Ajv = require("ajv");
const { CloudEvent, HTTP, ValidationError } = require("cloudevents");

const STRUCTURED = "application/cloudevents+json";
const SCHEMA_PREFIX = "urn:orderpipe:schema:";

function firstUrl(urls) {
  return urls.split(",")[0].trim();
}

function mediaType(ct) {
  return (ct || "").split(";")[0].trim().toLowerCase();
}

// The AMQP message as the SDK's HTTP binding expects it.
function asHttpMessage(msg) {
  const headers = {};
  if (msg.properties.contentType) headers["content-type"] = msg.properties.contentType;
  for (const [k, v] of Object.entries(msg.properties.headers || {})) {
    const m = /^cloudEvents[:_](.*)$/.exec(k);
    if (m) headers["ce-" + m[1]] = Buffer.isBuffer(v) ? v.toString("utf8") : String(v);
  }
  return { headers, body: msg.content.toString("utf8") };
}

function loadSchemas(dir) {
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  const schemas = {};
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith(".json") || f === "cloudevent.json" || f === "order.request.json") continue;
    const s = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
    const id = s.$id;
    delete s.$id;
    schemas[f.slice(0, -5)] = Object.assign(ajv.compile(s), { id });
  }
  return schemas;
}

function check(msg, schemas) {
  const ct = msg.properties.contentType;
  const mode = mediaType(ct) === STRUCTURED ? "structured" : "binary";
  if (!HTTP.isEvent(asHttpMessage(msg))) throw new Error(`no cloud event detected (content type ${ct})`);
  const ev = HTTP.toEvent(asHttpMessage(msg)); // strict: throws a ValidationError when invalid
  if (Array.isArray(ev)) throw new Error("a batch, not an event");
  ev.validate();
  if (ev.specversion !== "1.0") throw new Error(`specversion ${ev.specversion}`);
  if (mode === "structured" && ct !== "application/cloudevents+json; charset=utf-8")
    throw new Error(`structured content type '${ct}'`);
  if (mediaType(ev.datacontenttype) !== "application/json")
    throw new Error(`datacontenttype '${ev.datacontenttype}'`);
  if (ev.dataschema !== SCHEMA_PREFIX + ev.type)
    throw new Error(`dataschema '${ev.dataschema}' does not name the schema of ${ev.type}`);
  if (!ev.subject || ev.subject !== ev.orderid)
    throw new Error(`subject '${ev.subject}' is not the order id '${ev.orderid}'`);
  if (typeof ev.data !== "object" || ev.data === null || Array.isArray(ev.data))
    throw new Error("data is not a JSON object");
  const validate = schemas[ev.type];
  if (!validate) throw new Error(`no schema for type ${ev.type}`);
  if (validate.id !== ev.dataschema)
    throw new Error(`dataschema '${ev.dataschema}' is not the $id of ${ev.type}.json ('${validate.id}')`);
  if (!validate(ev.data))
    throw new Error(`data does not match ${ev.type}.json: ${JSON.stringify(validate.errors)}`);
  return { mode, type: ev.type, source: ev.source, id: ev.id };
}

async function read(url, schemaDir, queues) {
  const schemas = loadSchemas(schemaDir);
  const conn = await amqp.connect(firstUrl(url));
  const ch = await conn.createChannel();
  const summary = { messages: 0, failed: 0, types: {}, modes: {} };
  for (const q of queues) {
    for (;;) {
      const msg = await ch.get(q, { noAck: false });
      if (!msg) break;
      summary.messages++;
      const line = { queue: q, routing_key: msg.fields.routingKey, content_type: msg.properties.contentType };
      try {
        Object.assign(line, check(msg, schemas), { ok: true });
        summary.types[line.type] = (summary.types[line.type] || 0) + 1;
        summary.modes[line.mode] = (summary.modes[line.mode] || 0) + 1;
      } catch (e) {
        summary.failed++;
        const why = e instanceof ValidationError ? `${e.message} ${JSON.stringify(e.errors)}` : e.message;
        Object.assign(line, { ok: false, error: why });
      }
      console.log(JSON.stringify(line));
      ch.ack(msg);
    }
  }
  console.log(JSON.stringify({ summary }));
  await ch.close();
  await conn.close();
  return summary.failed === 0 ? 0 : 1;
}

async function publishBinary(url, type, orderId, dataJson) {
  const ev = new CloudEvent({
    type,
    source: "cloudevents-sdk-javascript",
    subject: orderId,
    orderid: orderId,
    datacontenttype: "application/json",
    dataschema: SCHEMA_PREFIX + type,
    data: JSON.parse(dataJson),
  });
  const { headers, body } = HTTP.binary(ev);
  const amqpHeaders = {};
  let contentType;
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === "content-type") contentType = v;
    else if (k.toLowerCase().startsWith("ce-")) amqpHeaders["cloudEvents:" + k.slice(3).toLowerCase()] = String(v);
  }
  const conn = await amqp.connect(firstUrl(url));
  const ch = await conn.createConfirmChannel();
  ch.publish("orderpipe.events", type, Buffer.from(typeof body === "string" ? body : JSON.stringify(body)), {
    contentType,
    headers: amqpHeaders,
    persistent: true,
    messageId: ev.id,
    mandatory: true,
  });
  await ch.waitForConfirms();
  console.log(JSON.stringify({ published: ev.id, type, content_type: contentType, headers: amqpHeaders }));
  await ch.close();
  await conn.close();
  return 0;
}

async function main(argv) {
  const [cmd, ...rest] = argv;
  if (cmd === "read" && rest.length >= 3) return read(rest[0], rest[1], rest.slice(2));
  if (cmd === "publish-binary" && rest.length === 4) return publishBinary(...rest);
  console.error("usage: conformance.js read AMQP_URL SCHEMA_DIR QUEUE... | publish-binary AMQP_URL TYPE ORDER_ID DATA_JSON");
  return 2;
}

main(process.argv.slice(2)).then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(`conformance: ${e.stack || e}`);
    process.exit(2);
  },
);
