// Parse Apex files with @apexdevtools/apex-parser (ANTLR grammar of the Apex
// language); print each syntax error as file:line:column message and exit 1 if any.
// Usage: node parse_apex.cjs <node_modules dir> <file.cls>...
"use strict";
const fs = require("fs");
const path = require("path");

const [modules, ...files] = process.argv.slice(2);
const { ApexParserFactory, ApexErrorListener } = require(
  path.join(path.resolve(modules), "@apexdevtools", "apex-parser"),
);

class Collect extends ApexErrorListener {
  constructor(file) {
    super();
    this.file = file;
    this.errors = [];
  }
  apexSyntaxError(line, column, msg) {
    this.errors.push(`${this.file}:${line}:${column} ${msg}`);
  }
}

let failed = 0;
for (const file of files) {
  const listener = new Collect(file);
  const source = fs.readFileSync(file, "utf8");
  const { parser } = ApexParserFactory.createLexerAndParser(source, listener);
  if (file.endsWith(".trigger")) {
    parser.triggerUnit();
  } else {
    parser.compilationUnit();
  }
  for (const error of listener.errors) {
    console.log(error);
  }
  failed += listener.errors.length ? 1 : 0;
  console.log(`${file}: ${listener.errors.length ? "syntax errors" : "ok"}`);
}
process.exit(failed ? 1 : 0);
