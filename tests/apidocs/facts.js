// Prints what an AsyncAPI or OpenAPI document declares, one fact a line, for
// tests/system/test_api_docs.sh to compare with what the code does:
//   asyncapi: "message <name>", "channel <address>", "send <address> <message>",
//             "receive <address> <message>", "queue <address> <message>" (a queue channel's messages)
//   openapi:  "route <METHOD> <path>", "error <status> <code>" (each code a response's error enum allows)
// Only the document's own $refs (#/...) are followed; the JSON Schemas' content is the validators' job.
'use strict';
const fs = require('fs');
const yaml = require('js-yaml');

const [kind, file] = process.argv.slice(2);
const doc = yaml.load(fs.readFileSync(file, 'utf8'));

function deref(node) {
  for (let i = 0; node && typeof node.$ref === 'string' && node.$ref.startsWith('#/') && i < 20; i++)
    node = node.$ref.slice(2).split('/').reduce((o, k) => (o ? o[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
  return node;
}

const out = [];
if (kind === 'asyncapi') {
  for (const m of Object.values(doc.components?.messages || {})) out.push(`message ${deref(m).name}`);
  for (const ch of Object.values(doc.channels || {})) {
    out.push(`channel ${ch.address}`);
    if (deref(ch.bindings)?.amqp?.is === 'queue')
      for (const m of Object.values(ch.messages || {})) out.push(`queue ${ch.address} ${deref(m).name}`);
  }
  for (const op of Object.values(doc.operations || {})) {
    const ch = deref(op.channel);
    for (const m of op.messages || []) out.push(`${op.action} ${ch.address} ${deref(m).name}`);
  }
} else if (kind === 'openapi') {
  const errorCodes = (schema, seen = 0) => {
    schema = deref(schema);
    if (!schema || seen > 10) return [];
    const own = deref(schema.properties?.error)?.enum || [];
    return own.concat(...(schema.allOf || []).map((s) => errorCodes(s, seen + 1)));
  };
  for (const [path, item] of Object.entries(doc.paths || {}))
    for (const method of ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']) {
      if (!item[method]) continue;
      out.push(`route ${method.toUpperCase()} ${path}`);
      for (const [status, resp] of Object.entries(item[method].responses || {}))
        for (const media of Object.values(deref(resp).content || {}))
          for (const code of errorCodes(media.schema)) out.push(`error ${status} ${code}`);
    }
} else {
  console.error('usage: node facts.js asyncapi|openapi FILE');
  process.exit(2);
}
console.log([...new Set(out)].sort().join('\n'));
