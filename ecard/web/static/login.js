// Scan-to-login page: long-polls the login state (no reload), swaps in a new QR when one
// expires, and continues to the relying party once the holder answered in the app.
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
      const { state } = await response.json();
      if (state === "approved" || state === "denied") {
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
