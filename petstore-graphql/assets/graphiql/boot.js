"use strict";
// Starts GraphiQL on the page that loaded it. A file of its own, not an inline script,
// so that the page's Content-Security-Policy needs no 'unsafe-inline'.

// GraphiQL's dialogs add a <style> element for scroll locking; it carries this nonce,
// which the page's style-src allows (the free variable webpack-built code reads).
window.__webpack_nonce__ = document.currentScript.nonce;

(function () {
  const root = document.getElementById("graphiql");
  // Relative to the page, so that a router nested under a prefix works as well.
  const url = new URL(root.dataset.endpoint, location.href);
  const subscriptions = new URL(url);
  subscriptions.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const fetcher = GraphiQL.createFetcher({
    url: url.href,
    subscriptionUrl: subscriptions.href,
  });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
  );
})();
