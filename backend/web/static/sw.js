// The web app's service worker, for Web Push only (docs/web.md, "Notifications"): it shows
// a page the server pushed (the alert's type and severity, never a name or a place) and, on
// a click, opens the page's link in this web app, where the officer signs in to act on it.
self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  event.waitUntil(
    self.registration.showNotification(data.title || "tagwatch", {
      body: data.body || "An alert needs acknowledging.",
      tag: data.tag,
      requireInteraction: true,
      data: { url: data.url || "/web/" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data.url, self.location.origin);
  // Only this web app's own pages: a link elsewhere is not ours to open.
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/web/")) return;
  event.waitUntil(
    (async () => {
      const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const w of open) {
        if (new URL(w.url).pathname.startsWith("/web/")) {
          await w.focus();
          return w.navigate(url.href);
        }
      }
      return self.clients.openWindow(url.href);
    })(),
  );
});
