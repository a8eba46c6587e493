// Writes the bytes that story-01727-performance-observability.http uploads
// into __http__/.data/ (git-ignored): `node __http__/gen-data.mjs`, which
// `make http` runs first. Idempotent: a file of the right size is kept.
//
//   part1.bin  5242880 bytes, starts with "%PDF-1.7\n"  (part 1 of castle.pdf)
//   part2.bin  5242880 bytes                           (part 2)
//   part3.bin   307200 bytes                           (part 3, the remainder)
//   front.png       70 bytes, a 1x1 PNG                (whole-file PUT)
//
// castle.pdf is part1 + part2 + part3: 10792960 bytes, three 5 MiB parts.
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '.data');
const PART = 5242880;
const png = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);
const files = {
  'part1.bin': () => Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(PART - 9)]),
  'part2.bin': () => randomBytes(PART),
  'part3.bin': () => randomBytes(300 * 1024),
  'front.png': () => png,
};
const sizes = { 'part1.bin': PART, 'part2.bin': PART, 'part3.bin': 300 * 1024, 'front.png': png.length };

mkdirSync(dir, { recursive: true });
for (const [name, make] of Object.entries(files)) {
  const path = join(dir, name);
  let size = -1;
  try {
    size = statSync(path).size;
  } catch {}
  if (size !== sizes[name]) writeFileSync(path, make());
}
console.log(`gen-data: ${Object.keys(files).join(', ')} in ${dir}`);
