// Web Push on this browser: the service worker (/web/sw.js) and the push subscription the
// server pages the officer through when they are on call (docs/web.md, "Notifications").
// The subscription is made with the server's VAPID public key, so only this server's
// pushes reach it.
import * as api from "./api.js";

export function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (b64url.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export async function current() {
  if (!supported()) return null;
  const reg = await navigator.serviceWorker.getRegistration("/web/");
  return reg ? reg.pushManager.getSubscription() : null;
}

export async function enable() {
  if ((await Notification.requestPermission()) !== "granted") {
    throw new Error("notifications are blocked for this site in the browser's settings");
  }
  const reg = await navigator.serviceWorker.register("/web/sw.js", { scope: "/web/" });
  await navigator.serviceWorker.ready;
  const { public_key: key } = await api.get("/api/notifications/push-key");
  const sub = (await reg.pushManager.getSubscription()) || (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }));
  const json = sub.toJSON();
  await api.post("/api/notifications/subscriptions", { endpoint: json.endpoint, keys: json.keys });
  return sub;
}

export async function disable() {
  const sub = await current();
  if (!sub) return;
  await api.request("DELETE", "/api/notifications/subscriptions", { params: { endpoint: sub.endpoint } });
  await sub.unsubscribe();
}
