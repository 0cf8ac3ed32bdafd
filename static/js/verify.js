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
    if ("credential" in data && await verifyApproverSignature(data, canonical, checkpoint, step)) {
      return "entry #" + data.seq + " is in the signed ledger, and the approver's signature verifies";
    }
    return "entry #" + data.seq + " is in the signed ledger";
  }

  /* --- Approvals signed by the approver (passkeys, DSSE): the checks of verify.py's section of the
   * same name. The decision's entry holds the statement and the signature; the page also carries the
   * credential's registration entry with its own inclusion proof against the same checkpoint. */
  const STATEMENT_PAYLOAD_TYPE = "application/vnd.governance.approval-statement+json";
  const utf8 = new TextDecoder("utf-8", { fatal: true });

  function fromB64url(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) {
      throw new Failure("not base64url: " + String(text).slice(0, 40));
    }
    let s = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return fromBase64(s);
  }

  function toB64url(bytes) {
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /* One CBOR item (RFC 8949) of the kinds a COSE key uses: integers, byte and text strings, maps. */
  function cborItem(data, offset, depth) {
    if (depth > 4 || offset >= data.length) throw new Failure("COSE key: truncated or too deep");
    const major = data[offset] >> 5;
    const info = data[offset] & 31;
    offset += 1;
    let arg = info;
    if (info >= 24 && info <= 27) {
      const size = 1 << (info - 24);
      if (offset + size > data.length) throw new Failure("COSE key: truncated");
      arg = 0;
      for (let i = 0; i < size; i += 1) arg = arg * 256 + data[offset + i];
      offset += size;
    } else if (info > 27) {
      throw new Failure("COSE key: indefinite lengths are not allowed");
    }
    if (major === 0) return [arg, offset];
    if (major === 1) return [-1 - arg, offset];
    if (major === 2 || major === 3) {
      if (offset + arg > data.length) throw new Failure("COSE key: truncated string");
      const raw = data.slice(offset, offset + arg);
      return [major === 2 ? raw : utf8.decode(raw), offset + arg];
    }
    if (major === 5) {
      const map = new Map();
      for (let i = 0; i < arg; i += 1) {
        let key, value;
        [key, offset] = cborItem(data, offset, depth + 1);
        [value, offset] = cborItem(data, offset, depth + 1);
        if (map.has(key)) throw new Failure("COSE key: duplicate label");
        map.set(key, value);
      }
      return [map, offset];
    }
    throw new Failure("COSE key: CBOR major type " + major + " is not expected");
  }

  async function importCoseKey(cose) {
    const [key, end] = cborItem(cose, 0, 0);
    if (!(key instanceof Map) || end !== cose.length) throw new Failure("COSE key: not one CBOR map");
    const kty = key.get(1), alg = key.get(3), crv = key.get(-1);
    if (kty === 2 && alg === -7 && crv === 1) {
      const jwk = { kty: "EC", crv: "P-256", x: toB64url(key.get(-2)), y: toB64url(key.get(-3)), ext: true };
      return { alg, key: await crypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]) };
    }
    if (kty === 1 && alg === -8 && crv === 6) {
      return { alg, key: await crypto.subtle.importKey("raw", key.get(-2), { name: "Ed25519" }, false, ["verify"]) };
    }
    throw new Failure("COSE key: unsupported key (kty " + kty + ", alg " + alg + ")");
  }

  /* WebAuthn's ES256 signatures are DER; Web Crypto wants r || s, 32 bytes each. */
  function derToRaw(der) {
    let i = 0;
    if (der[i++] !== 0x30) throw new Failure("the ES256 signature is not DER");
    if (der[i++] & 0x80) throw new Failure("the ES256 signature is too long");
    const out = new Uint8Array(64);
    for (let k = 0; k < 2; k += 1) {
      if (der[i++] !== 0x02) throw new Failure("the ES256 signature is not DER");
      const n = der[i++];
      let v = der.slice(i, i + n);
      i += n;
      while (v.length > 32 && v[0] === 0) v = v.slice(1);
      if (v.length > 32) throw new Failure("the ES256 signature is not P-256");
      out.set(v, 32 * k + 32 - v.length);
    }
    return out;
  }

  function pae(type, payload) {
    const typeBytes = encoder.encode(type);
    return concat(encoder.encode("DSSEv1 " + typeBytes.length + " "), typeBytes,
                  encoder.encode(" " + payload.length + " "), payload);
  }

  async function verifyApproverSignature(data, canonical, checkpoint, step) {
    const decision = JSON.parse(utf8.decode(canonical));
    const state = (decision.payload || {}).state || {};
    const signature = state.signature;
    if (!signature || !signature.method) {
      step("The decision is not signed by the approver (the policy did not ask for it).");
      return false;
    }
    const evidence = data.credential;
    if (!evidence) throw new Failure("the signing credential has no registration entry in the ledger");
    const registrationBytes = fromBase64(evidence.canonical_b64);
    if (toHex(await sha256(registrationBytes)) !== evidence.entry_hash_hex) {
      throw new Failure("SHA-256 of the credential's registration entry differs from its entry hash");
    }
    if (!evidence.proof_b64) throw new Failure("the credential's registration is not yet in a checkpoint");
    const root = await rootFromInclusion(await leafHash(registrationBytes), evidence.seq, data.tree_size,
                                         evidence.proof_b64.map(fromBase64));
    if (!equal(root, checkpoint.root)) throw new Failure("the credential entry's inclusion proof does not lead to the signed root");
    const registration = JSON.parse(utf8.decode(registrationBytes));
    const credential = (registration.payload || {}).state || {};
    if (registration.action !== "approver_credential.registered" || registration.seq !== evidence.seq) {
      throw new Failure("the credential evidence is not a registration entry");
    }
    if (credential.credential_id !== signature.credential_id) throw new Failure("the credential entry is not the signing credential's");
    if (registration.seq >= decision.seq) {
      throw new Failure("the credential was registered at seq " + registration.seq + ", after the decision (seq " + decision.seq + ")");
    }
    if (credential.user !== state.approver || registration.actor !== decision.actor) {
      throw new Failure("the credential was not registered by the approver (" + decision.actor + ") for themself");
    }
    step("The signing credential was registered by " + registration.actor + " at seq " + registration.seq +
         ", before the decision, in the same signed ledger");
    let statement;
    if (signature.method === "dsse") {
      const envelope = signature.envelope || {};
      const sigs = envelope.signatures || [];
      if (credential.kind !== "ed25519" || envelope.payloadType !== STATEMENT_PAYLOAD_TYPE || sigs.length !== 1 ||
          sigs[0].keyid !== credential.credential_id) {
        throw new Failure("the DSSE envelope is not one statement signed by the registered key");
      }
      statement = fromBase64(envelope.payload);
      const key = await crypto.subtle.importKey("raw", fromB64url(credential.public_key), { name: "Ed25519" }, false, ["verify"]);
      if (!await crypto.subtle.verify({ name: "Ed25519" }, key, fromBase64(sigs[0].sig), pae(STATEMENT_PAYLOAD_TYPE, statement))) {
        throw new Failure("the DSSE signature does not verify with the registered key");
      }
      step("The DSSE envelope's Ed25519 signature over the statement verifies with the registered key");
    } else if (signature.method === "passkey") {
      if (credential.kind !== "passkey") throw new Failure("a passkey signature by a credential that is not a passkey");
      statement = fromBase64(signature.statement);
      const authData = fromB64url(signature.authenticator_data);
      const clientDataJSON = fromB64url(signature.client_data_json);
      if (authData.length < 37) throw new Failure("authenticatorData is shorter than 37 bytes");
      if (!equal(authData.slice(0, 32), await sha256(encoder.encode(credential.rp_id)))) {
        throw new Failure("authenticatorData's rpIdHash is not SHA-256 of " + credential.rp_id);
      }
      if (!(authData[32] & 1)) throw new Failure("authenticatorData: the user-present flag is not set");
      const client = JSON.parse(utf8.decode(clientDataJSON));
      if (client.type !== "webauthn.get") throw new Failure("clientDataJSON's type is not webauthn.get");
      if (client.challenge !== toB64url(await sha256(statement))) throw new Failure("clientDataJSON's challenge is not SHA-256 of the statement");
      if (client.origin !== signature.origin) throw new Failure("clientDataJSON's origin is " + client.origin + ", not " + signature.origin);
      const { alg, key } = await importCoseKey(fromB64url(credential.public_key));
      const signed = concat(authData, await sha256(clientDataJSON));
      const raw = fromB64url(signature.signature);
      const ok = alg === -7
        ? await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, derToRaw(raw), signed)
        : await crypto.subtle.verify({ name: "Ed25519" }, key, raw, signed);
      if (!ok) throw new Failure("the passkey's signature does not verify with the registered key");
      step("The passkey's " + (alg === -7 ? "ES256" : "Ed25519") + " signature over authenticatorData || SHA-256(clientDataJSON) " +
           "verifies; clientDataJSON is webauthn.get at " + client.origin + " with challenge SHA-256(statement)");
    } else {
      throw new Failure("unknown signing method " + signature.method);
    }
    const fields = JSON.parse(utf8.decode(statement));
    for (const [name, value] of [["request", state.request], ["decision", state.decision],
                                 ["comment", state.comment], ["approver", decision.actor]]) {
      if (fields[name] !== value) throw new Failure("the signed statement's " + name + " differs from the decision's");
    }
    step("The signed statement names this request, decision, comment and approver");
    return true;
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
