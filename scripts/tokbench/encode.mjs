// Reference encoder for cross-checks: reads JSONL lines {"text": ...} on stdin and writes
// {"ids":[...]} per line, like `dbrx tokenize --jsonl`. Usage: node encode.mjs [none|all]
// ("all" recognises cl100k_base's own special tokens only).
import { get_encoding } from "tiktoken";
import { createInterface } from "node:readline";

const enc = get_encoding("cl100k_base");
const special = process.argv[2] === "all" ? "all" : [];
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
for await (const line of rl) {
  if (line === "") continue;
  const { text } = JSON.parse(line);
  out.push(JSON.stringify({ ids: Array.from(enc.encode(text, special, [])) }));
  if (out.length >= 1024) {
    process.stdout.write(out.join("\n") + "\n");
    out.length = 0;
  }
}
if (out.length) process.stdout.write(out.join("\n") + "\n");
enc.free();
