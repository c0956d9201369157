// The service zone page: switch the language (kept in the form, so a search keeps it) and fill
// in the phone's location for "near me".  The search itself is an ordinary form: the page works
// without this script.
(function () {
  "use strict";
  const html = document.documentElement;
  const langField = document.getElementById("lang-field");
  const toggle = document.getElementById("lang-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      html.lang = html.lang === "en" ? "zh-CN" : "en";
      if (langField) langField.value = html.lang;
    });
  }
  const locate = document.getElementById("locate");
  if (locate && navigator.geolocation) {
    locate.addEventListener("click", function () {
      locate.disabled = true;
      navigator.geolocation.getCurrentPosition(
        function (position) {
          document.getElementById("lat").value = position.coords.latitude.toFixed(5);
          document.getElementById("lon").value = position.coords.longitude.toFixed(5);
          locate.disabled = false;
          document.getElementById("search").requestSubmit();
        },
        function () { locate.disabled = false; },
        { enableHighAccuracy: false, timeout: 10000, maximumAge: 60000 }
      );
    });
  } else if (locate) {
    locate.hidden = true;
  }
})();
