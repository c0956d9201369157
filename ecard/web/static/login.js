// Scan-to-login page: long-polls the login state (no reload), swaps in a new QR when one
// expires, and once a holder approved in the app shows their masked name and asks the person at
// this browser to confirm ("是本人") or cancel ("不是我") before continuing to the relying party
// (a code exists only after the confirmation); a denial continues at once.
"use strict";

(() => {
  const toggle = document.getElementById("lang-toggle");
  if (toggle) {
    toggle.addEventListener("click", () => {
      const html = document.documentElement;
      html.lang = html.lang === "en" ? "zh-CN" : "en";
    });
  }

  const root = document.getElementById("login");
  if (!root) return;
  const qr = document.getElementById("qr");
  const flow = root.dataset.flow;
  let session = root.dataset.session;
  const show = (state) => { root.dataset.state = state; };
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const confirmButton = document.getElementById("confirm-login");
  const cancelButton = document.getElementById("cancel-login");

  // "confirm" or "cancel": the server answers with where to go (the cookie proves this browser).
  async function decide(decision) {
    confirmButton.disabled = true;
    cancelButton.disabled = true;
    let response;
    try {
      response = await fetch(`/oidc/login/${encodeURIComponent(session)}/${decision}`, {
        method: "POST", credentials: "same-origin", cache: "no-store",
      });
    } catch (networkError) {
      confirmButton.disabled = false;
      cancelButton.disabled = false;
      return;
    }
    if (!response.ok) { show(response.status === 404 ? "flow-expired" : "error"); return; }
    const { location } = await response.json();
    show(decision === "confirm" ? "approved" : "cancelled");
    window.location.assign(location);
  }
  if (confirmButton && cancelButton) {
    confirmButton.addEventListener("click", () => decide("confirm"));
    cancelButton.addEventListener("click", () => decide("cancel"));
  }

  function askForConfirmation(holderName) {
    document.getElementById("holder-name").textContent = holderName || "*";
    confirmButton.disabled = false;
    cancelButton.disabled = false;
    show("approved_pending_confirmation");
    confirmButton.focus();
  }

  async function renew() {
    const response = await fetch(`/oidc/flows/${encodeURIComponent(flow)}/renew`, {
      method: "POST", credentials: "same-origin", cache: "no-store",
    });
    if (!response.ok) { show("flow-expired"); return false; }
    const fresh = await response.json();
    session = fresh.session_id;
    qr.src = fresh.qr_svg_url;
    show("pending");
    return true;
  }

  async function watch() {
    let known = "pending";
    for (;;) {
      let response;
      try {
        response = await fetch(`/oidc/login/${encodeURIComponent(session)}/poll?known=${known}`, {
          credentials: "same-origin", cache: "no-store",
        });
      } catch (networkError) {
        await pause(2000);
        continue;
      }
      if (response.status >= 500 || response.status === 429) { await pause(3000); continue; }
      if (!response.ok) { show("error"); return; }
      const { state, holder_name: holderName } = await response.json();
      if (state === "approved_pending_confirmation") {
        askForConfirmation(holderName);
        return;
      }
      if (state === "denied") {
        show(state);
        window.location.assign(`/oidc/login/${encodeURIComponent(session)}/continue`);
        return;
      }
      if (state === "expired") {
        show("expired");
        if (!(await renew())) return;
        known = "pending";
        continue;
      }
      show(state);
      known = state;
    }
  }

  watch();
})();
