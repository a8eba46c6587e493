// Writes the bytes that story-01727-performance-observability.http uploads
// into __http__/.data/ (git-ignored): `node __http__/gen-data.mjs`, which
// `make http` runs first. Idempotent: a file of the right size is kept.
//
//   part1.bin  5242880 bytes, starts with "%PDF-1.7\n"  (part 1 of castle.pdf and watch.pdf)
//   part2.bin  5242880 bytes                           (part 2 of castle.pdf)
//   part3.bin   307200 bytes                           (the last part of castle.pdf and watch.pdf)
//   front.png       70 bytes, a 1x1 PNG                (whole-file PUT)
//   tiny.pdf       ~300 bytes, a one-page PDF          (the instruction of TH-HP-001, WH-HP-001)
//   photo.png   a real 640x480 RGB PNG, ~10 KB          (the image TH-HP-001 makes a thumbnail of)
//
// castle.pdf is part1 + part2 + part3: 10792960 bytes, three 5 MiB parts.
// watch.pdf (WS-HP-001) is part1 + part3: 5550080 bytes, two parts.
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const dir = join(dirname(fileURLToPath(import.meta.url)), '.data');
const PART = 5242880;
const front = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

// A minimal PNG encoder: signature, IHDR (8-bit RGB, no interlace), one zlib IDAT of the rows
// (each prefixed with filter type 0), IEND; every chunk is length + type + data + CRC-32.
const CRC = Array.from({ length: 256 }, (_, n) => {
  for (let k = 0; k < 8; k++) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1;
  return n >>> 0;
});
const crc32 = (buf) => (buf.reduce((c, b) => CRC[(c ^ b) & 0xff] ^ (c >>> 8), 0xffffffff) ^ 0xffffffff) >>> 0;
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function encodePNG(width, height, rgbAt) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB (compression, filter, interlace: 0)
  const rows = Buffer.alloc((1 + 3 * width) * height);
  for (let y = 0, o = 0; y < height; y++) {
    rows[o++] = 0; // filter: none
    for (let x = 0; x < width; x++, o += 3) rows.set(rgbAt(x, y), o);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
// 640x480: a sky-to-grass gradient with a red 2x4 brick (and its studs) in the middle.
const photo = encodePNG(640, 480, (x, y) => {
  const stud = [0, 1, 2, 3].some((i) => (x - (230 + 60 * i)) ** 2 + (y - 205) ** 2 < 18 ** 2);
  if (stud || (x >= 200 && x < 440 && y >= 220 && y < 300)) return [200, 20, 20];
  return y < 360 ? [90 + (y >> 2), 150 + (y >> 3), 235] : [40, 150 - ((y - 360) >> 1), 40];
});

const tinyPDF = Buffer.from(
  [
    '%PDF-1.4',
    '1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj',
    '2 0 obj <</Type /Pages /Kids [3 0 R] /Count 1>> endobj',
    '3 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 200 200]>> endobj',
    'trailer <</Root 1 0 R>>',
    '%%EOF',
    '',
  ].join('\n'),
);

const files = {
  'part1.bin': [PART, () => Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(PART - 9)])],
  'part2.bin': [PART, () => randomBytes(PART)],
  'part3.bin': [300 * 1024, () => randomBytes(300 * 1024)],
  'front.png': [front.length, () => front],
  'tiny.pdf': [tinyPDF.length, () => tinyPDF],
  'photo.png': [photo.length, () => photo],
};

mkdirSync(dir, { recursive: true });
for (const [name, [want, make]] of Object.entries(files)) {
  const path = join(dir, name);
  let size = -1;
  try {
    size = statSync(path).size;
  } catch {}
  if (size !== want) writeFileSync(path, make());
}
console.log(`gen-data: ${Object.keys(files).join(', ')} in ${dir}`);
