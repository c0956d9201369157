// The verifier page: log in with the verifier's credentials (exchanged for a short-lived session
// token kept in sessionStorage, never the secret), then verify each scanned code.  A keyboard-wedge
// scanner types the code and Enter into the focused field, which submits the form.
"use strict";

const SESSION_KEY = "ecard.verifier.session";
const LANG_KEY = "ecard.verifier.lang";
const FIELD_LABELS = {
  masked_name: ["姓名", "Name"],
  full_name: ["姓名（全）", "Full name"],
  card_status: ["卡状态", "Card status"],
  region: ["发卡地区", "Issuing region"],
  masked_card_number: ["社保卡号", "Card number"],
  card_number: ["社保卡号（全）", "Full card number"],
  masked_identity_number: ["身份证号", "Identity number"],
  identity_number: ["身份证号（全）", "Full identity number"],
};
const STATUS_LABELS = {
  active: ["正常", "active"], lost: ["挂失", "lost"], frozen: ["冻结", "frozen"],
  cancelled: ["注销", "cancelled"], deceased: ["已故", "deceased"],
};

const $ = (id) => document.getElementById(id);

function session() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return saved && saved.expires_at > Date.now() ? saved : null;
  } catch (e) {
    return null;
  }
}

function showLoggedIn(saved) {
  $("login").hidden = !!saved;
  $("scan").hidden = !saved;
  $("logout").hidden = !saved;
  $("who").hidden = !saved;
  $("who").textContent = saved ? saved.name : "";
  (saved ? $("code") : $("client-id")).focus();
}

// Ends the session on the server too (its token is refused from then on, on every worker), then
// forgets it here.  The page returns to the login form even when the server cannot be reached.
function logout() {
  const saved = session();
  sessionStorage.removeItem(SESSION_KEY);
  clearResult();
  showLoggedIn(null);
  if (saved) {
    return fetch("/verifier/v1/session", {
      method: "DELETE",
      headers: { Authorization: "Bearer " + saved.token },
    }).catch(() => undefined);
  }
}

async function login(event) {
  event.preventDefault();
  const id = $("client-id").value.trim();
  const secret = $("client-secret").value;
  $("client-secret").value = "";
  $("login-error").hidden = true;
  const response = await fetch("/verifier/v1/session", {
    method: "POST",
    headers: { Authorization: "Basic " + btoa(id + ":" + secret) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("login-error").textContent = body.title || response.statusText;
    $("login-error").hidden = false;
    return;
  }
  const saved = {
    token: body.access_token,
    name: body.verifier_name,
    expires_at: Date.now() + (body.expires_in - 10) * 1000,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(saved));
  showLoggedIn(saved);
}

function clearResult() {
  $("result").dataset.state = "idle";
  for (const id of ["verdict-zh", "verdict-en", "reason-zh", "reason-en", "reason-code"]) $(id).textContent = "";
  $("fields").replaceChildren();
}

function bilingual(parent, pair) {
  for (const [cls, text] of [["zh", pair[0]], ["en", pair[1]]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    parent.append(span);
  }
}

function showResult(body) {
  const state = body.valid ? "valid" : "invalid";
  $("result").dataset.state = state;
  $("verdict-zh").textContent = $("verdict-zh").dataset[state];
  $("verdict-en").textContent = $("verdict-en").dataset[state];
  $("reason-zh").textContent = body.valid ? "" : body.message["zh-CN"];
  $("reason-en").textContent = body.valid ? "" : body.message.en;
  $("reason-code").textContent = body.reason || "";
  const rows = [];
  for (const [name, value] of Object.entries(body.fields || {})) {
    const dt = document.createElement("dt");
    bilingual(dt, FIELD_LABELS[name] || [name, name]);
    const dd = document.createElement("dd");
    dd.dataset.field = name;
    if (name === "card_status" && STATUS_LABELS[value]) bilingual(dd, STATUS_LABELS[value]);
    else dd.textContent = value;
    rows.push(dt, dd);
  }
  $("fields").replaceChildren(...rows);
}

function showProblem(problem) {
  showResult({ valid: false, reason: problem.code || "error", message: { "zh-CN": problem.title || "错误", en: problem.title || "Error" }, fields: {} });
}

async function verify(event) {
  event.preventDefault();
  const saved = session();
  if (!saved) return logout();
  const code = $("code").value.replace(/[\r\n]+$/, "");
  $("code").value = "";
  if (!code) return;
  clearResult();
  $("result").dataset.state = "checking";
  let response;
  try {
    response = await fetch("/verifier/v1/verifications", {
      method: "POST",
      headers: { Authorization: "Bearer " + saved.token, "Content-Type": "application/json" },
      body: JSON.stringify({ code }),
    });
  } catch (e) {
    showProblem({ code: "network_error", title: String(e) });
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) return logout();
  if (!response.ok) showProblem(body);
  else showResult(body);
  $("code").focus();
}

function setLanguage(lang) {
  document.documentElement.lang = lang;
  localStorage.setItem(LANG_KEY, lang);
}

document.addEventListener("DOMContentLoaded", () => {
  setLanguage(localStorage.getItem(LANG_KEY) || (navigator.language.startsWith("en") ? "en" : "zh-CN"));
  $("lang-toggle").addEventListener("click", () =>
    setLanguage(document.documentElement.lang === "en" ? "zh-CN" : "en"));
  $("login").addEventListener("submit", login);
  $("scan-form").addEventListener("submit", verify);
  $("logout").addEventListener("click", logout);
  // A scan must land in the code field even after a click elsewhere on the page.
  document.addEventListener("click", (event) => {
    if (!$("scan").hidden && event.target.tagName !== "BUTTON") $("code").focus();
  });
  showLoggedIn(session());
});
