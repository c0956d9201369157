// The operator console's only script (the page CSP allows no inline script): a form marked
// data-once is sent once (its submit buttons are disabled after the first submission, so a
// double click cannot send an action twice), and the copy button puts a new secret on the
// clipboard.  Every page works without it.
"use strict";

(() => {
  for (const form of document.querySelectorAll("form[data-once]")) {
    form.addEventListener("submit", () => {
      // after this submission has started: disabling first would drop the button's own value
      setTimeout(() => {
        for (const button of form.querySelectorAll("button[type=submit]")) button.disabled = true;
      }, 0);
    });
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source || !navigator.clipboard) return;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "✓";
      } catch (error) {
        button.textContent = "✗";
      }
    });
  }
})();
