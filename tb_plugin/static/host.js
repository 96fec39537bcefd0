/** TensorBoard's page around the plugin's iframe: reload notices, dark mode and the URL hash.

TensorBoard 2.21 talks to plugin iframes over a MessagePort that the iframe offers with
`postMessage("experimental.bootstrap")`; it then sends JSON messages such as
"experimental.DataReloaded" (reload button, auto-reload) and "experimental.RunsChanged",
each expecting a reply. Its dark mode is the class "dark-mode" on its <body>. Its URL hash
is `#<plugin>&key=value&...`; plugins keep their keys under `p.<plugin>.`. */

const NAME = "tf_explain_kit";
const PREFIX = `p.${NAME}.`;
const RELOADS = new Set(["experimental.DataReloaded", "experimental.RunsChanged"]);

/** TensorBoard's window when the plugin runs inside it (same origin), else null. */
function host() {
  try {
    return window.parent !== window && window.parent.document ? window.parent : null;
  } catch {
    return null; // another origin
  }
}

/** Call `onReload()` whenever TensorBoard reloads its data or its run list changes. */
export function onTensorBoardReload(onReload) {
  if (window.parent === window) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.isReply) return;
    if (RELOADS.has(message.type)) onReload(message.type);
    channel.port1.postMessage(JSON.stringify({ type: message.type, id: message.id, payload: null, error: null, isReply: true }));
  };
  window.parent.postMessage("experimental.bootstrap", "*", [channel.port2]);
}

/** Keep the class "tek-dark" on this document in step with TensorBoard's dark mode
(or, outside TensorBoard, with the system's colour scheme). */
export function followDarkMode() {
  const page = host();
  const query = window.matchMedia("(prefers-color-scheme: dark)");
  const apply = () => document.documentElement.classList.toggle("tek-dark", page ? page.document.body.classList.contains("dark-mode") : query.matches);
  apply();
  if (page) new MutationObserver(apply).observe(page.document.body, { attributes: true, attributeFilter: ["class"] });
  else query.addEventListener("change", apply);
}

function hashWindow() {
  return host() || window;
}

/** The plugin's keys in the page's URL hash, as `{key: value}` strings. */
export function readHashState() {
  const state = {};
  for (const part of hashWindow().location.hash.slice(1).split("&")) {
    const [key, value] = part.split("=");
    if (value === undefined) continue;
    const name = decodeURIComponent(key);
    if (name.startsWith(PREFIX)) state[name.slice(PREFIX.length)] = decodeURIComponent(value);
  }
  return state;
}

/** Replace the plugin's keys in the URL hash by `state` (entries null/"" are left out),
keeping TensorBoard's own keys; no history entry is added. */
export function writeHashState(state) {
  const page = hashWindow();
  const kept = page.location.hash.slice(1).split("&").filter((part) => part && !decodeURIComponent(part.split("=")[0]).startsWith(PREFIX));
  if (!kept.length && page !== window) kept.push(NAME);
  const ours = Object.entries(state).filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => `${encodeURIComponent(PREFIX + k)}=${encodeURIComponent(String(v))}`);
  const hash = `#${[...kept, ...ours].join("&")}`;
  if (hash === page.location.hash) return;
  page.history.replaceState(page.history.state, "", hash);
}
