// Writes random JSONL {"text": ...} lines that stress the cl100k pre-tokenizer: mixed
// classes, whitespace runs, contractions with case-folded letters, digits of several
// scripts, combining marks, astral characters, special-token fragments.
// Usage: node gen.mjs COUNT SEED
const count = Number(process.argv[2] ?? 10000);
let seed = BigInt(process.argv[3] ?? 1);
function rnd(n) { // xorshift64*
  seed ^= seed >> 12n; seed ^= (seed << 25n) & 0xffffffffffffffffn; seed ^= seed >> 27n;
  return Number(((seed * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn) >> 11n) % n;
}
const atoms = [
  "a", "Z", "hello", " world", "ſ", "K", "'", "'s", "'S", "'t", "'re", "'RE", "'Ve", "'m", "'ll", "'LL", "'d", "'ſ", "’s",
  " ", "  ", "\t", "\n", "\r\n", "\r", "\f", "\v", "\u00a0", "\u3000", "\u2003", "\u2028", "\u0085", "\u200b", "\u1680",
  "0", "12", "1234", "٣", "²", "½", "Ⅻ", "१२", "①",
  ".", ",", "!", "?", "...", "<", "|", ">", "<|endoftext|>", "<|im_start|>", "<|fim_prefix|>", "{", "}", "()", "=>", "$", "_", "-",
  "é", "e\u0301", "\u0301", "\u0308x", "中文", "日本語", "한국어", "ß", "İ", "ǅ", "ʰ", "ー", "々",
  "👍", "👍🏽", "👨‍👩‍👧", "🇺🇸", "#️⃣", "\ufeff", "\u202e", "\u0000", "\u001f", "\u007f", "\u0080", "\u009f",
  "𝐀", "𝟘", "\u{10ffff}", "\u{e0001}",
];
function randCodePoint() {
  for (;;) {
    const r = rnd(4);
    const cp = r === 0 ? rnd(0x80) : r === 1 ? rnd(0x800) : r === 2 ? rnd(0x10000) : rnd(0x110000);
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    return String.fromCodePoint(cp);
  }
}
for (let i = 0; i < count; i++) {
  let s = "";
  const n = rnd(40);
  for (let j = 0; j < n; j++) {
    s += rnd(5) === 0 ? randCodePoint() : atoms[rnd(atoms.length)];
  }
  process.stdout.write(JSON.stringify({ text: s }) + "\n");
}
