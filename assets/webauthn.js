// Stepgate's passkey ceremonies (WebAuthn Level 3), the one script the
// pages load: no dependency, no inline script (CSP script-src 'self').
//
// The element id="webauthn" carries the contract (docs/integrate.md):
//   data-options-url  POST {} -> {"publicKey": {...}} (binary fields base64url)
//   data-finish-url   POST the credential as JSON -> {"redirect": URL} or a
//                     4xx {"error", "error_description"}
//   data-mode         "create" (register a passkey) or "get" (use one)
//   data-conditional  "true": also offer passkeys in the email field's
//                     autofill, where the browser supports it
// Both POSTs carry the page's CSRF token (<meta name="csrf-token">) in the
// X-CSRF-Token header. The button inside the element always works.
(function () {
  "use strict";
  var root = document.getElementById("webauthn");
  if (!root) {
    return;
  }
  var button = root.querySelector("button");
  var problem = document.getElementById("webauthn-error");

  function say(text) {
    if (problem) {
      problem.textContent = text;
      problem.hidden = !text;
    }
  }

  if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) {
    say("This browser cannot use passkeys.");
    if (button) {
      button.disabled = true;
    }
    return;
  }
  root.hidden = false;

  function decode(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function encode(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) {
          throw new Error(json.error_description || json.error || "The request failed.");
        }
        return json;
      });
    });
  }

  function ids(list) {
    (list || []).forEach(function (c) {
      c.id = decode(c.id);
    });
  }

  function credentialJson(credential) {
    var r = credential.response;
    var out = {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      response: { clientDataJSON: encode(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = encode(r.attestationObject);
      if (r.getTransports) {
        out.response.transports = r.getTransports();
      }
    } else {
      out.response.authenticatorData = encode(r.authenticatorData);
      out.response.signature = encode(r.signature);
      out.response.userHandle = r.userHandle ? encode(r.userHandle) : null;
    }
    return out;
  }

  function finish(credential, extra) {
    var body = credentialJson(credential);
    Object.keys(extra).forEach(function (k) {
      body[k] = extra[k];
    });
    return post(root.dataset.finishUrl, body).then(function (json) {
      window.location.assign(json.redirect);
    });
  }

  function register() {
    var nameField = document.getElementById("passkey-name");
    var name = nameField ? nameField.value.trim() : "";
    return post(root.dataset.optionsUrl, {}).then(function (options) {
      var pk = options.publicKey;
      pk.challenge = decode(pk.challenge);
      pk.user.id = decode(pk.user.id);
      ids(pk.excludeCredentials);
      return navigator.credentials.create({ publicKey: pk });
    }).then(function (credential) {
      return finish(credential, name ? { name: name } : {});
    });
  }

  function use(mediation, signal) {
    return post(root.dataset.optionsUrl, {}).then(function (options) {
      var pk = options.publicKey;
      pk.challenge = decode(pk.challenge);
      ids(pk.allowCredentials);
      var request = { publicKey: pk };
      if (mediation) {
        request.mediation = mediation;
        request.signal = signal;
      }
      return navigator.credentials.get(request);
    }).then(function (credential) {
      if (credential) {
        return finish(credential, {});
      }
    });
  }

  function failed(error) {
    if (error && error.name === "AbortError") {
      return;
    }
    if (error && error.name === "NotAllowedError") {
      say("The passkey was not used. Try again, or use another way to sign in.");
    } else {
      say(error && error.message ? error.message : "The passkey did not work.");
    }
    if (button) {
      button.disabled = false;
    }
  }

  var pending = null;

  // Autofill (conditional mediation) where the browser offers it.
  if (root.dataset.conditional === "true" && root.dataset.mode !== "create" &&
      PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (available && window.AbortController) {
        pending = new AbortController();
        // Nobody asked for this one: it fails quietly, the button stays.
        use("conditional", pending.signal).catch(function () {});
      }
    }).catch(function () {});
  }

  if (button) {
    button.addEventListener("click", function (event) {
      event.preventDefault();
      say("");
      if (pending) {
        pending.abort();
        pending = null;
      }
      button.disabled = true;
      var ceremony = root.dataset.mode === "create" ? register() : use(null, null);
      ceremony.catch(failed);
    });
  }
})();
