/* mailgate admin pages: small progressive enhancements.  The pages work without it (forms post normally). */
(function () {
  "use strict";

  // Same rules as mailgate.providers.validate_tenant (the server checks again on Save).
  var GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
  var DOMAIN = /^(?=.{3,253}$)([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$/;
  var WORDS = ["organizations", "common", "consumers"];

  function tenantProblem(tenant) {
    if (!tenant) {
      return "is required for Microsoft: paste the Directory (tenant) ID of your app registration";
    }
    if (WORDS.indexOf(tenant.toLowerCase()) >= 0 || GUID.test(tenant) || DOMAIN.test(tenant)) {
      return "";
    }
    return "must be a directory (tenant) ID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, a verified domain " +
      "such as contoso.onmicrosoft.com, or one of organizations, common, consumers";
  }

  function byId(id) { return document.getElementById(id); }

  function showError(input, name, label, text) {
    var box = byId(name + "-error");
    if (!box) { return; }
    box.textContent = text ? "\u2718 " + label + " " + text : "";
    box.hidden = !text;
    var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (x) {
      return x && x !== box.id;
    });
    if (text) { ids.push(box.id); input.setAttribute("aria-invalid", "true"); }
    else { input.removeAttribute("aria-invalid"); }
    if (ids.length) { input.setAttribute("aria-describedby", ids.join(" ")); }
  }

  function setupOAuthPage() {
    var form = byId("oauth-form");
    var data = byId("provider-catalogue");
    if (!form || !data) { return; }
    var catalogue = {};
    JSON.parse(data.textContent).forEach(function (p) { catalogue[p.name] = p; });
    var provider = byId("provider"), tenant = byId("tenant");
    var touched = false;

    function update() {
      var spec = catalogue[provider.value];
      if (!spec) { return; }
      var needsTenant = !!spec.requires_tenant;
      byId("tenant-field").hidden = !needsTenant;
      var t = needsTenant ? (tenant.value.trim() || spec.default_tenant) : spec.default_tenant;
      byId("authorization_url").value = spec.authorization_url.split("{tenant}").join(t);
      byId("token_url").value = spec.token_url.split("{tenant}").join(t);
      // A saved secret belongs to the saved provider's app: another provider needs its own secret.
      var keeps = form.dataset.secretSet === "true" && provider.value === form.dataset.savedProvider;
      byId("secret-set-note").hidden = !keeps;
      byId("secret-new-note").hidden = keeps;
      var hinted = ["google", "microsoft", "sandbox"].indexOf(provider.value) >= 0 ? provider.value : "other";
      form.querySelectorAll("[data-provider-hint]").forEach(function (hint) {
        hint.hidden = hint.getAttribute("data-provider-hint") !== hinted;
      });
      if (needsTenant && touched) {
        showError(tenant, "tenant", "Tenant", tenantProblem(tenant.value.trim()));
      } else if (!needsTenant) {
        showError(tenant, "tenant", "Tenant", "");
      }
    }
    // The grant: only those the provider offers; the fields of the chosen one (data-grants) are shown.
    var grant = byId("grant");
    function updateGrant() {
      var spec = catalogue[provider.value];
      if (!grant || !spec) { return; }
      var offered = spec.grants || ["authorization_code"];
      Array.prototype.forEach.call(grant.options, function (option) {
        option.hidden = offered.indexOf(option.value) < 0;
      });
      if (offered.indexOf(grant.value) < 0) { grant.value = "authorization_code"; }
      form.querySelectorAll("[data-grants]").forEach(function (element) {
        element.hidden = element.getAttribute("data-grants").split(" ").indexOf(grant.value) < 0;
      });
    }
    if (grant) { grant.addEventListener("change", updateGrant); }
    provider.addEventListener("change", update);
    provider.addEventListener("change", updateGrant);
    tenant.addEventListener("input", function () { update(); });
    tenant.addEventListener("blur", function () { touched = true; update(); });
    update();
    updateGrant();

    var copy = byId("copy-redirect");
    if (copy) {
      copy.addEventListener("click", function () {
        var input = byId(copy.dataset.copy), status = byId("copy-status");
        function done(ok) { status.textContent = ok ? "Copied." : "Select the URI and copy it (Ctrl+C)."; }
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () {
            input.select(); done(false);
          });
        } else {
          input.select();
          var ok = false;
          try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
          done(ok);
        }
      });
    }
  }

  function setupEmailPage() {
    var form = byId("email-form");
    if (!form) { return; }
    var auth = byId("authentication"), sender = byId("sender"), username = byId("username");
    var account = (form.dataset.account || "").toLowerCase();
    var warning = byId("sender-warning");
    var serverWarning = warning ? warning.textContent : "";

    var delivery = byId("delivery");

    function update() {
      var overHttp = delivery.value !== "smtp";
      if (overHttp && auth.value !== "oauth") { auth.value = "oauth"; }  // the APIs take OAuth tokens only
      byId("server-fieldset").hidden = overHttp;
      byId("delivery-reauth").hidden = !(form.dataset.authorized === "true" &&
        delivery.value !== form.dataset.savedDelivery);
      byId("password-field").hidden = auth.value !== "password";
      byId("oauth-box").hidden = auth.value !== "oauth";
      if (!warning || !account) { return; }
      var s = sender.value.trim().toLowerCase(), u = username.value.trim().toLowerCase();
      var differs = (s && s !== account) || (u && u !== account);
      warning.hidden = !differs;
      if (differs && !serverWarning) {
        warning.textContent = "Warning: the sender or username differs from the account that authorized (" +
          form.dataset.account + "). Use the same mailbox, or Authorize again signed in as the sender.";
      }
    }
    auth.addEventListener("change", update);
    delivery.addEventListener("change", update);
    sender.addEventListener("input", update);
    username.addEventListener("input", update);
    update();

    form.addEventListener("submit", function (event) {
      var action = event.submitter ? event.submitter.value : "save";
      if (action === "test" || action === "send") {
        var busy = byId("busy");
        busy.textContent = action === "send" ? "Sending the test email\u2026" : "Testing the connection\u2026";
        busy.hidden = false;
      }
    });
  }

  function focusFeedback() {
    var target = byId("error-summary") || byId("test-results");
    if (target) { target.focus(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupOAuthPage();
    setupEmailPage();
    focusFeedback();
  });
})();
