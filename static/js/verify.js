/*
 * "Verify here" for one ledger entry, entirely in the browser (Web Crypto), never asking the
 * server whether anything is valid. It reads the evidence embedded in the page (#verify-data):
 *   1. SHA-256(canonical bytes) == entry_hash;
 *   2. RFC 9162 leaf hash SHA-256(0x00 || bytes), folded with the inclusion proof
 *      (node = SHA-256(0x01 || left || right)), equals the root in the signed checkpoint, and the
 *      checkpoint's tree size is the proof's;
 *   3. the checkpoint is a C2SP signed note with a valid Ed25519 signature by the vkey's key
 *      (key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]);
 *   4. each witness cosignature (C2SP tlog-cosignature v1) by a witness of the service's policy
 *      verifies: key id = SHA-256(name || 0x0A || 0x04 || key)[:4], then an 8-byte big-endian
 *      time, then Ed25519 over "cosignature/v1\ntime <time>\n" + the checkpoint text.
 */
(function () {
  "use strict";

  const encoder = new TextEncoder();

  class Failure extends Error {}

  function fromBase64(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      throw new Failure("not standard base64: " + String(text).slice(0, 40));
    }
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) { out.set(part, offset); offset += part.length; }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (bytes) => sha256(concat(Uint8Array.of(0), bytes));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  /* RFC 9162 section 2.1.3.2: the root an inclusion proof implies. */
  async function rootFromInclusion(leaf, leafIndex, treeSize, proof) {
    let fn = BigInt(leafIndex);
    let sn = BigInt(treeSize) - 1n;
    if (fn > sn) throw new Failure("leaf index " + leafIndex + " is outside a tree of size " + treeSize);
    let r = leaf;
    for (const [position, p] of proof.entries()) {
      if (p.length !== 32) throw new Failure("proof element " + position + " is not 32 bytes");
      if (sn === 0n) throw new Failure("the inclusion proof is longer than the path to the root");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Failure("the inclusion proof is shorter than the path to the root");
    return r;
  }

  function parseVkey(vkey) {
    const first = vkey.indexOf("+");
    const second = vkey.indexOf("+", first + 1);
    if (first < 1 || second < 0) throw new Failure("the vkey is not <name>+<key id>+<key>");
    const name = vkey.slice(0, first);
    const keyIdHex = vkey.slice(first + 1, second).toLowerCase();
    const material = fromBase64(vkey.slice(second + 1));
    if (!/^[0-9a-f]{8}$/.test(keyIdHex)) throw new Failure("the vkey's key id is not 8 hex digits");
    if (material.length !== 33 || material[0] !== 1) throw new Failure("the vkey is not an Ed25519 key");
    return { name, keyIdHex, publicKey: material.slice(1) };
  }

  function parseNote(note) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Failure("the note has no blank line before its signatures");
    const text = note.slice(0, split + 1);
    const block = note.slice(split + 2);
    if (!block.endsWith("\n")) throw new Failure("the note does not end with a newline");
    const signatures = block.slice(0, -1).split("\n").map((line) => {
      if (!line.startsWith("\u2014 ")) throw new Failure("not a signature line: " + line.slice(0, 40));
      const rest = line.slice(2);
      const space = rest.indexOf(" ");
      if (space < 1) throw new Failure("malformed signature line");
      return { name: rest.slice(0, space), raw: fromBase64(rest.slice(space + 1)) };
    });
    return { text, signatures };
  }

  function parseCheckpoint(text) {
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) throw new Failure("the checkpoint needs origin, size and root lines");
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Failure("the checkpoint size is not decimal");
    const root = fromBase64(lines[2]);
    if (root.length !== 32) throw new Failure("the checkpoint root is not 32 bytes");
    return { origin: lines[0], treeSize: BigInt(lines[1]), root };
  }

  async function verifyNoteSignature(note, vkey) {
    const key = parseVkey(vkey);
    const expectedId = (await sha256(concat(encoder.encode(key.name + "\n"), Uint8Array.of(1), key.publicKey))).slice(0, 4);
    if (toHex(expectedId) !== key.keyIdHex) throw new Failure("the vkey's key id does not match its name and key");
    const parsed = parseNote(note);
    const mine = parsed.signatures.filter((sig) => sig.name === key.name && equal(sig.raw.slice(0, 4), expectedId));
    if (mine.length === 0) throw new Failure("the checkpoint has no signature by " + key.name + "+" + key.keyIdHex);
    const publicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    for (const sig of mine) {
      const signature = sig.raw.slice(4);
      if (signature.length !== 64) throw new Failure("the Ed25519 signature is not 64 bytes");
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signature, encoder.encode(parsed.text));
      if (!ok) throw new Failure("the checkpoint's Ed25519 signature does not verify with " + key.name + "+" + key.keyIdHex);
    }
    return parsed.text;
  }

  /* Witness cosignatures (cosignature/v1, Ed25519): [{name, time}] of those that verify. */
  async function verifyCosignatures(note, witnesses) {
    const parsed = parseNote(note);
    const found = [];
    for (const witness of witnesses || []) {
      const parts = witness.vkey.split("+");
      if (parts.length < 3) throw new Failure("a witness vkey is not <name>+<key id>+<key>");
      const name = parts[0];
      const material = fromBase64(parts.slice(2).join("+"));
      if (material.length !== 33 || material[0] !== 4) throw new Failure("witness " + name + " is not a cosignature/v1 key");
      const publicKey = material.slice(1);
      const keyId = (await sha256(concat(encoder.encode(name + "\n"), Uint8Array.of(4), publicKey))).slice(0, 4);
      if (toHex(keyId) !== parts[1].toLowerCase()) throw new Failure("witness " + name + ": key id does not match its key");
      const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
      for (const sig of parsed.signatures) {
        if (sig.name !== name || !equal(sig.raw.slice(0, 4), keyId)) continue;
        if (sig.raw.length !== 4 + 8 + 64) throw new Failure("the cosignature by " + name + " is not a cosignature/v1");
        let time = 0n;
        for (const byte of sig.raw.slice(4, 12)) time = (time << 8n) | BigInt(byte);
        const message = concat(encoder.encode("cosignature/v1\ntime " + time + "\n"), encoder.encode(parsed.text));
        if (!await crypto.subtle.verify({ name: "Ed25519" }, key, sig.raw.slice(12), message)) {
          throw new Failure("the cosignature by witness " + name + " does not verify");
        }
        found.push({ name: witness.name + (witness.not_independent ? " (demo, not independent)" : ""),
                     time: new Date(Number(time) * 1000).toISOString().replace(".000Z", "Z") });
      }
    }
    return found;
  }

  async function verify(data, step) {
    const canonical = fromBase64(data.canonical_b64);
    const entryHash = await sha256(canonical);
    if (toHex(entryHash) !== String(data.entry_hash_hex).toLowerCase()) {
      throw new Failure("SHA-256 of the canonical bytes (" + toHex(entryHash).slice(0, 16) + "…) differs from the entry hash");
    }
    step("SHA-256 of the canonical bytes equals the entry hash " + toHex(entryHash).slice(0, 16) + "…");
    if (!data.checkpoint_note) {
      step("No signed checkpoint yet: inclusion and signature cannot be checked.");
      return "the entry hash matches its bytes (no checkpoint yet)";
    }
    const text = await verifyNoteSignature(data.checkpoint_note, data.vkey);
    step("The checkpoint's Ed25519 signature verifies with the published vkey");
    const cosigned = await verifyCosignatures(data.checkpoint_note, data.witnesses);
    if (cosigned.length === 0) {
      step("No witness cosignature: the history is vouched for by the operator only");
    }
    for (const item of cosigned) {
      step("Witness " + item.name + " cosigned this checkpoint at " + item.time + " (cosignature/v1 verifies)");
    }
    const checkpoint = parseCheckpoint(text);
    if (checkpoint.treeSize !== BigInt(data.tree_size)) {
      throw new Failure("the signed tree size " + checkpoint.treeSize + " differs from the proof's " + data.tree_size);
    }
    if (data.proof_b64 === null || data.proof_b64 === undefined) {
      step("The entry is newer than the checkpoint; inclusion will be provable at the next one.");
      return "hash and checkpoint signature verify (entry not yet in a checkpoint)";
    }
    const leaf = await leafHash(canonical);
    const proof = data.proof_b64.map(fromBase64);
    const root = await rootFromInclusion(leaf, data.leaf_index, data.tree_size, proof);
    if (!equal(root, checkpoint.root)) {
      throw new Failure("the inclusion proof leads to root " + toHex(root).slice(0, 16) + "…, not the checkpoint's " +
                        toHex(checkpoint.root).slice(0, 16) + "…");
    }
    step("The inclusion proof (" + proof.length + " hashes) leads from leaf " + data.leaf_index +
         " to the signed root of tree size " + data.tree_size);
    return "entry #" + data.seq + " is in the signed ledger";
  }

  function show(result, ok, headline, steps) {
    result.hidden = false;
    result.className = "verify-result " + (ok ? "ok" : "bad");
    result.dataset.outcome = ok ? "success" : "failure";
    result.textContent = "";
    const strong = document.createElement("strong");
    strong.textContent = headline;
    result.appendChild(strong);
    const list = document.createElement("ul");
    list.className = "verify-steps";
    for (const text of steps) {
      const item = document.createElement("li");
      item.textContent = text;
      list.appendChild(item);
    }
    result.appendChild(list);
  }

  function start() {
    const button = document.getElementById("verify-button");
    const result = document.getElementById("verify-result");
    if (!button || !result) return;
    button.addEventListener("click", async () => {
      const steps = [];
      button.disabled = true;
      try {
        if (!window.crypto || !crypto.subtle) throw new Failure("this browser has no Web Crypto (use HTTPS or localhost)");
        // Read the evidence at click time: what is checked is what the page holds now.
        const data = JSON.parse(document.getElementById("verify-data").textContent);
        const summary = await verify(data, (text) => steps.push("✓ " + text));
        show(result, true, "Verified: " + summary + ".", steps);
      } catch (error) {
        const reason = error instanceof Failure ? error.message : "unexpected error: " + error;
        show(result, false, "Verification FAILED: " + reason + ".", steps);
      } finally {
        button.disabled = false;
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
