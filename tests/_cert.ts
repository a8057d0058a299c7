// A self-signed certificate for the TLS tests, made with the runtime's own
// WebCrypto (an ECDSA P-256 key) and a small DER writer: no openssl binary,
// which a fresh CI machine may not have. Subject and issuer CN=localhost,
// subjectAltName IP 127.0.0.1 and DNS localhost, extended key usage
// serverAuth, valid from an hour ago for a day; no basicConstraints (a
// certificate that says it is a CA is refused as a server's own by rustls).

/** A certificate and its private key, PEM. */
export interface SelfSigned {
  /** The certificate, `-----BEGIN CERTIFICATE-----`. */
  cert: string;
  /** The private key, PKCS#8, `-----BEGIN PRIVATE KEY-----`. */
  key: string;
}

/** A fresh key pair and a certificate for localhost and 127.0.0.1. */
export async function selfSignedCertificate(): Promise<SelfSigned> {
  const pair = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const spki = new Uint8Array(
    await crypto.subtle.exportKey("spki", pair.publicKey),
  );
  const pkcs8 = new Uint8Array(
    await crypto.subtle.exportKey("pkcs8", pair.privateKey),
  );
  const ecdsaWithSha256 = sequence(oid("1.2.840.10045.4.3.2"));
  const name = sequence(
    set(sequence(oid("2.5.4.3"), tlv(0x0c, utf8("localhost")))),
  );
  const now = Date.now();
  const tbs = sequence(
    tlv(0xa0, integer(new Uint8Array([2]))), // version: v3
    integer(crypto.getRandomValues(new Uint8Array(16))), // serial number
    ecdsaWithSha256,
    name, // issuer
    sequence(utcTime(now - 3_600_000), utcTime(now + 86_400_000)),
    name, // subject
    spki,
    tlv(
      0xa3,
      sequence(
        extension(
          "2.5.29.17", // subjectAltName
          sequence(
            tlv(0x82, utf8("localhost")), // dNSName
            tlv(0x87, new Uint8Array([127, 0, 0, 1])), // iPAddress
          ),
        ),
        extension(
          "2.5.29.37", // extKeyUsage
          sequence(oid("1.3.6.1.5.5.7.3.1")), // serverAuth
        ),
      ),
    ),
  );
  const p1363 = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      pair.privateKey,
      tbs,
    ),
  );
  // WebCrypto signs as r ‖ s (IEEE P1363); X.509 wants SEQUENCE { r, s }.
  const signature = sequence(
    integer(p1363.subarray(0, 32)),
    integer(p1363.subarray(32)),
  );
  const certificate = sequence(
    tbs,
    ecdsaWithSha256,
    tlv(0x03, concat(new Uint8Array([0]), signature)), // no unused bits
  );
  return {
    cert: pem("CERTIFICATE", certificate),
    key: pem("PRIVATE KEY", pkcs8),
  };
}

/** One DER element: tag, definite length, contents. */
function tlv(tag: number, contents: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = contents.length;
  let length: number[];
  if (n < 0x80) length = [n];
  else if (n < 0x100) length = [0x81, n];
  else length = [0x82, n >> 8, n & 0xff];
  return concat(new Uint8Array([tag, ...length]), contents);
}

function sequence(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return tlv(0x30, concat(...items));
}

function set(...items: Uint8Array[]): Uint8Array {
  return tlv(0x31, concat(...items));
}

/** A non-negative INTEGER from big-endian bytes. */
function integer(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  // A set top bit would make it negative: a zero byte before it.
  return tlv(
    0x02,
    trimmed[0] & 0x80 ? concat(new Uint8Array([0]), trimmed) : trimmed,
  );
}

function oid(dotted: string): Uint8Array {
  const [first, second, ...rest] = dotted.split(".").map(Number);
  const bytes = [40 * first + second];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let value = arc >> 7; value > 0; value >>= 7) {
      base128.unshift((value & 0x7f) | 0x80);
    }
    bytes.push(...base128);
  }
  return tlv(0x06, new Uint8Array(bytes));
}

function extension(id: string, value: Uint8Array): Uint8Array {
  return sequence(oid(id), tlv(0x04, value));
}

/** UTCTime, YYMMDDHHMMSSZ. */
function utcTime(ms: number): Uint8Array {
  const text = new Date(ms).toISOString().replace(/[-:T]/g, "").slice(2, 14);
  return tlv(0x17, utf8(`${text}Z`));
}

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function pem(label: string, der: Uint8Array): string {
  const base64 = btoa(String.fromCharCode(...der));
  const lines = base64.match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${lines}\n-----END ${label}-----\n`;
}
