/* Starts Swagger UI on the API documentation page (/v2/docs).  A file rather than an inline script, so that the
   page keeps the admin pages' Content-Security-Policy (script-src 'self').  The page's #swagger-ui element
   carries the OpenAPI URL and the options (FastAPI's defaults) in data attributes. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var options = JSON.parse(root.getAttribute("data-options"));
  options.url = root.getAttribute("data-openapi-url");
  options.presets = [window.SwaggerUIBundle.presets.apis];
  window.ui = window.SwaggerUIBundle(options);
})();
