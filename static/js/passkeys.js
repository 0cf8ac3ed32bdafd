// Passkeys for signed approvals: register one (the signing page), and sign a decision with one (the
// model page's decide form). The server issues the approval statement; the WebAuthn challenge is
// its SHA-256; the assertion goes back with the form and is verified (and kept) by the server.
(function () {
  "use strict";

  function fromB64url(text) {
    let s = text.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  }

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken(form) {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function postJSON(url, body, token) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": token},
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.code ? data.code + ": " : "") + (data.message || "HTTP " + response.status));
    return data;
  }

  // The PublicKeyCredential as the JSON the server's `webauthn` library reads.
  function credentialJSON(credential) {
    const r = credential.response;
    const out = {
      id: credential.id, rawId: toB64url(credential.rawId), type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: {clientDataJSON: toB64url(r.clientDataJSON)},
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    }
    if (r.authenticatorData) {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      out.response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    return out;
  }

  function supported(status) {
    if (window.PublicKeyCredential && navigator.credentials) return true;
    status.textContent = "This browser cannot use passkeys here (a secure context, https or localhost, is needed).";
    return false;
  }

  document.querySelectorAll("form.decide-form button.sign-passkey").forEach((button) => {
    button.addEventListener("click", async () => {
      const form = button.closest("form");
      const status = form.querySelector(".sign-status");
      if (!supported(status)) return;
      const decision = form.querySelector("input[name=decision]:checked");
      if (!decision) {
        status.textContent = "Choose approve or reject first.";
        return;
      }
      button.disabled = true;
      try {
        status.textContent = "Asking the server for the statement to sign…";
        const issued = await postJSON(form.dataset.statementUrl, {
          decision: decision.value, comment: form.querySelector("textarea[name=comment]").value,
        }, csrfToken(form));
        status.textContent = "Confirm with your passkey. You sign: " + issued.statement;
        const allowed = JSON.parse(form.dataset.credentials || "[]");
        const credential = await navigator.credentials.get({publicKey: {
          challenge: fromB64url(issued.challenge), rpId: form.dataset.rpId, userVerification: "preferred",
          timeout: 120000, allowCredentials: allowed.map((id) => ({type: "public-key", id: fromB64url(id)})),
        }});
        form.querySelector("input[name=signature]").value = JSON.stringify(
          {method: "passkey", assertion: credentialJSON(credential)});
        status.textContent = "Signed; recording the decision…";
        form.submit();
      } catch (error) {
        status.textContent = "Not signed: " + error.message;
        button.disabled = false;
      }
    });
  });

  // The terminal path: show the statement to sign with bin/approval-sign; the envelope is pasted back.
  document.querySelectorAll("form.decide-form button.get-statement").forEach((button) => {
    button.addEventListener("click", async () => {
      const form = button.closest("form");
      const shown = form.querySelector(".dsse-statement");
      const decision = form.querySelector("input[name=decision]:checked");
      if (!decision) {
        shown.textContent = "Choose approve or reject first.";
        return;
      }
      try {
        const issued = await postJSON(form.dataset.statementUrl, {
          decision: decision.value, comment: form.querySelector("textarea[name=comment]").value,
        }, csrfToken(form));
        shown.textContent = issued.statement;
      } catch (error) {
        shown.textContent = "No statement: " + error.message;
      }
    });
  });

  const register = document.getElementById("register-passkey");
  if (register) {
    register.addEventListener("click", async () => {
      const form = register.closest("form");
      const status = document.getElementById("passkey-status");
      if (!supported(status)) return;
      register.disabled = true;
      try {
        const token = csrfToken(form);
        const options = await postJSON("/api/me/passkeys/options/", {}, token);
        const credential = await navigator.credentials.create({publicKey: {
          challenge: fromB64url(options.challenge), rp: options.rp,
          user: {id: fromB64url(options.user.id), name: options.user.name, displayName: options.user.displayName},
          pubKeyCredParams: options.pubKeyCredParams, timeout: options.timeout,
          excludeCredentials: (options.excludeCredentials || []).map((c) => ({type: c.type, id: fromB64url(c.id)})),
          authenticatorSelection: options.authenticatorSelection, attestation: options.attestation || "none",
        }});
        await postJSON("/api/me/passkeys/", {
          response: credentialJSON(credential), label: document.getElementById("passkey-label").value,
        }, token);
        status.textContent = "Passkey registered.";
        window.location.reload();
      } catch (error) {
        status.textContent = "Not registered: " + error.message;
        register.disabled = false;
      }
    });
  }
})();
