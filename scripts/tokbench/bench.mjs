// Reference side of the tokenizer benchmark: encode_ordinary of the npm tiktoken package
// (WASM build of OpenAI's Rust tiktoken) over a corpus file, on one core.
// Usage: node bench.mjs CORPUS [RUNS] [IDS_OUT]
// Prints MB/s (MB = 1e6 bytes, as go test reports); with IDS_OUT also writes the ids as
// one JSON array, to compare with `dbrx tokenize`.
import { get_encoding } from "tiktoken";
import { readFileSync, writeFileSync } from "node:fs";

const [corpus, runsArg, idsOut] = process.argv.slice(2);
const text = readFileSync(corpus, "utf8");
const bytes = Buffer.byteLength(text, "utf8");
const runs = Number(runsArg ?? 5);
const enc = get_encoding("cl100k_base");
let ids = enc.encode_ordinary(text); // warm-up
const times = [];
for (let i = 0; i < runs; i++) {
  const t0 = process.hrtime.bigint();
  ids = enc.encode_ordinary(text);
  times.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
times.sort((a, b) => a - b);
const best = times[0], median = times[Math.floor(times.length / 2)];
console.log(`npm tiktoken ${JSON.parse(readFileSync(new URL("./node_modules/tiktoken/package.json", import.meta.url))).version}: ` +
  `${bytes} bytes, ${ids.length} tokens, best ${(bytes / best / 1e6).toFixed(2)} MB/s, median ${(bytes / median / 1e6).toFixed(2)} MB/s over ${runs} runs`);
if (idsOut) writeFileSync(idsOut, "[" + Array.from(ids).join(",") + "]\n");
enc.free();
