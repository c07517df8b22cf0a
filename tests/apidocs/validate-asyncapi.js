// Validates an AsyncAPI document with @asyncapi/parser (the parser behind `asyncapi validate`),
// resolving its $refs to the JSON Schemas beside it. Prints each diagnostic; exits 1 on any error
// (and on any warning with --strict), 0 when the document is valid.
'use strict';
const path = require('path');
const { Parser, fromFile, DiagnosticSeverity } = require('@asyncapi/parser');

async function main() {
  const args = process.argv.slice(2);
  const strict = args.includes('--strict');
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) {
    console.error('usage: node validate-asyncapi.js [--strict] FILE');
    return 2;
  }
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, path.resolve(file)).parse();
  let bad = 0;
  for (const d of diagnostics) {
    const level = d.severity === DiagnosticSeverity.Error ? 'error'
      : d.severity === DiagnosticSeverity.Warning ? 'warning' : 'info';
    if (d.severity === DiagnosticSeverity.Error || (strict && d.severity === DiagnosticSeverity.Warning))
      bad++;
    console.log(`${level} ${d.code} at ${(d.path || []).join('.')}: ${d.message}`);
  }
  if (!document || bad) {
    console.log(`${file}: invalid (${bad} problems)`);
    return 1;
  }
  console.log(`${file}: valid AsyncAPI ${document.version()}`);
  return 0;
}

main().then((rc) => process.exit(rc), (e) => { console.error(e); process.exit(1); });
