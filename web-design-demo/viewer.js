// The in-chat image viewer: an MCP Apps View (ext-apps 2026-01-26) for generate_image and
// get_generation. The host renders it in a sandboxed iframe; everything goes through
// JSON-RPC over postMessage with the host:
//   View -> Host  ui/initialize, ui/notifications/initialized, ui/notifications/size-changed,
//                 tools/call (regenerate, poll a job, fetch image bytes, find a job's prompt),
//                 ui/open-link, ui/message (regenerate through the chat when the host cannot call tools)
//   Host -> View  ui/notifications/tool-input, ui/notifications/tool-result,
//                 ui/notifications/tool-cancelled, ui/notifications/host-context-changed,
//                 ui/resource-teardown, ping
// The gallery is the demo's gallery.js (inlined by mcp_image_server/viewer.py).

import { createGallery, parseToolResult, itemsFromResult, FINAL_STATES, copyText } from "./gallery.js";

const APPS_PROTOCOL = "2026-01-26";
const HOST_TIMEOUT_MS = 180000;
const POLL_WAIT_SECONDS = 30;

const view = {
  args: null, // the arguments of the tool call this view belongs to
  toolName: null,
  items: [],
  hostCapabilities: {},
  request: null, // what "regenerate" repeats: {prompt, params}
  busy: false,
};

const $ = (id) => document.getElementById(id);

// --- postMessage JSON-RPC -------------------------------------------------------------------------

let nextId = 1;
const pending = new Map();

function post(message) {
  window.parent.postMessage(message, "*");
}

function hostRequest(method, params) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (pending.delete(id)) reject(new Error(`The chat app did not answer ${method}.`));
    }, HOST_TIMEOUT_MS);
    pending.set(id, { resolve, reject, timer });
    post({ jsonrpc: "2.0", id, method, params });
  });
}

function hostNotify(method, params = {}) {
  post({ jsonrpc: "2.0", method, params });
}

function onMessage(event) {
  if (event.source !== window.parent) return; // only the host (or its sandbox proxy) speaks to us
  const msg = event.data;
  if (!msg || typeof msg !== "object" || msg.jsonrpc !== "2.0") return;
  if (msg.method === undefined && msg.id !== undefined) {
    const waiter = pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id);
    clearTimeout(waiter.timer);
    if (msg.error) waiter.reject(Object.assign(new Error(msg.error.message || "Host error"), { code: msg.error.code }));
    else waiter.resolve(msg.result);
    return;
  }
  const params = msg.params || {};
  switch (msg.method) {
    case "ui/notifications/tool-input":
    case "ui/notifications/tool-input-partial":
      onToolInput(params.arguments || {}, msg.method.endsWith("partial"));
      break;
    case "ui/notifications/tool-result":
      onToolResult(params);
      break;
    case "ui/notifications/tool-cancelled":
      setStatus(`Cancelled${params.reason ? `: ${params.reason}` : ""}.`);
      break;
    case "ui/notifications/host-context-changed":
      applyHostContext(params);
      break;
    default:
      if (msg.id !== undefined) {
        // ui/resource-teardown and ping want an empty result; anything else is unknown to us.
        const known = msg.method === "ui/resource-teardown" || msg.method === "ping";
        post(known
          ? { jsonrpc: "2.0", id: msg.id, result: {} }
          : { jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: `Method not found: ${msg.method}` } });
      }
  }
}

// --- host context ---------------------------------------------------------------------------------

function applyHostContext(ctx) {
  if (!ctx) return;
  if (ctx.theme === "dark" || ctx.theme === "light") document.documentElement.dataset.theme = ctx.theme;
  const variables = ctx.styles && ctx.styles.variables;
  if (variables) {
    for (const [name, value] of Object.entries(variables)) {
      if (name.startsWith("--") && typeof value === "string") document.documentElement.style.setProperty(name, value);
    }
  }
  const dims = ctx.containerDimensions;
  if (dims && typeof dims.maxHeight === "number") document.documentElement.style.maxHeight = `${dims.maxHeight}px`;
  if (ctx.toolInfo && ctx.toolInfo.tool && ctx.toolInfo.tool.name) view.toolName = ctx.toolInfo.tool.name;
}

function canCallTools() {
  return Boolean(view.hostCapabilities && view.hostCapabilities.serverTools);
}

// --- state -> screen ------------------------------------------------------------------------------

function setStatus(text, { busy = false } = {}) {
  const node = $("v-status");
  node.textContent = text;
  node.classList.toggle("is-busy", busy);
}

function showError(text) {
  const node = $("v-error");
  node.textContent = text || "";
  node.hidden = !text;
}

function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return s;
  const first = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

function summary() {
  const n = view.items.length;
  if (!n) return "No images.";
  const providers = [...new Set(view.items.map((i) => i.provider))].join(", ");
  return `${n} image${n === 1 ? "" : "s"} · ${providers}`;
}

const gallery = createGallery($("v-gallery"), {
  label: "Generated images",
  emptyText: "The images will show here when the generation finishes.",
  actions: [
    { id: "regenerate", label: "Regenerate", icon: "refresh", primary: true },
    { id: "copy-url", label: "Copy URL", icon: "link", secondary: true },
    { id: "copy-prompt", label: "Copy prompt", icon: "quote", secondary: true },
  ],
  onOpen: (item) => openImage(item),
  loadFallback: (item) => fetchImageData(item),
  onAction: (action, item, button) => {
    if (action === "regenerate") regenerate(item);
    else if (action === "copy-url") copy(item.url, "Image URL copied.", button);
    else if (action === "copy-prompt") copy(item.prompt, "Prompt copied.", button);
  },
});

async function copy(text, done, button) {
  if (!text) {
    setStatus("This image has no URL (the server has no public base URL).");
    return;
  }
  const ok = await copyText(text);
  setStatus(ok ? done : "The chat app blocked the clipboard.");
  if (button) button.focus();
}

async function openImage(item) {
  if (!item.url) return;
  if (view.hostCapabilities.openLinks) {
    try {
      await hostRequest("ui/open-link", { url: item.url });
      return;
    } catch {
      // fall through: some hosts allow plain popups from the sandbox
    }
  }
  window.open(item.url, "_blank", "noopener");
}

async function fetchImageData(item) {
  if (!canCallTools()) return null;
  const result = await hostRequest("tools/call", { name: "get_image_data", arguments: { image_id: item.id } });
  const sc = result && result.structuredContent;
  return sc && sc.ok && sc.base64 ? `data:${sc.mime_type};base64,${sc.base64}` : null;
}

function render() {
  gallery.render(view.items);
  setStatus(summary());
}

// --- tool input / result --------------------------------------------------------------------------

function onToolInput(args, partial) {
  if (partial && view.args) return;
  view.args = args;
  if (!view.toolName) view.toolName = "job_id" in args && !("prompt" in args) ? "get_generation" : "generate_image";
  if (typeof args.prompt === "string" && args.prompt) {
    view.request = { prompt: args.prompt, params: generationArgs(args) };
    if (!view.items.length) setStatus(`Generating “${args.prompt.slice(0, 80)}”…`, { busy: true });
  }
}

/** generate_image arguments worth repeating: everything but what pins the old result. */
function generationArgs(args) {
  const { seed, idempotency_key: key, job_id: job, wait_seconds: wait, ...rest } = args;
  return rest;
}

async function onToolResult(result) {
  const parsed = parseToolResult(result);
  if (!parsed.ok) {
    showError(sentence(parsed.error ? parsed.error.message : parsed.text) || "The generation failed.");
    setStatus(view.items.length ? summary() : "Nothing to show.");
    return;
  }
  showError("");
  if (parsed.jobId && !FINAL_STATES.includes(parsed.status)) {
    await followJob(parsed);
    return;
  }
  await addResult(parsed, { replace: true });
}

async function addResult(parsed, { replace = false } = {}) {
  if (!view.request && parsed.jobId && canCallTools()) view.request = await requestOfJob(parsed.jobId, parsed);
  const request = view.request || { prompt: "", params: null };
  const items = itemsFromResult(parsed, { prompt: request.prompt, params: request.params });
  view.items = replace ? items : [...items, ...view.items];
  render();
  for (const warning of parsed.warnings) setStatus(`${summary()} · ${sentence(warning)}`);
}

/** The prompt and arguments behind a job (get_generation results do not repeat the prompt). */
async function requestOfJob(jobId, parsed) {
  try {
    const result = await hostRequest("tools/call", { name: "list_generations", arguments: { limit: 100 } });
    const jobs = (result && result.structuredContent && result.structuredContent.jobs) || [];
    const job = jobs.find((j) => j.job_id === jobId);
    if (!job) return null;
    const first = parsed.images[0] || {};
    const params = { prompt: job.prompt };
    if (job.provider || first.provider) params.provider = job.provider || first.provider;
    if (first.style) params.style = first.style;
    if (first.resolution) params.resolution = first.resolution;
    return { prompt: job.prompt, params };
  } catch {
    return null;
  }
}

/** A job handed back unfinished: wait for it through get_generation (a long poll on the server). */
async function followJob(parsed) {
  if (!canCallTools()) {
    setStatus(`Still ${parsed.status}. Ask for get_generation(job_id="${parsed.jobId}") to see the images.`);
    return;
  }
  let current = parsed;
  while (current.ok && current.jobId && !FINAL_STATES.includes(current.status)) {
    setStatus(`Still ${current.status}…`, { busy: true });
    const result = await hostRequest("tools/call", {
      name: "get_generation",
      arguments: { job_id: current.jobId, wait_seconds: POLL_WAIT_SECONDS },
    });
    current = parseToolResult(result);
  }
  if (!current.ok) {
    showError(sentence(current.error ? current.error.message : current.text));
    setStatus(view.items.length ? summary() : "Nothing to show.");
    return;
  }
  await addResult(current, { replace: !view.items.length });
}

// --- regenerate -----------------------------------------------------------------------------------

async function regenerate(item) {
  if (view.busy) return;
  const params = (item.params && item.params.prompt ? item.params : null) ||
    (view.request && view.request.params) ||
    (item.prompt ? { prompt: item.prompt, provider: item.provider, style: item.style, resolution: item.resolution } : null);
  if (!params) {
    showError("This image's prompt is unknown, so it cannot be regenerated from here.");
    return;
  }
  const args = { ...generationArgs(params), n: 1 };
  if (!canCallTools()) {
    // Ask through the conversation instead.
    try {
      await hostRequest("ui/message", {
        role: "user",
        content: { type: "text", text: `Regenerate this image with generate_image(${JSON.stringify(args)}).` },
      });
      setStatus("Asked the assistant to regenerate it.");
    } catch (err) {
      showError(`The chat app cannot regenerate from here (${err.message}).`);
    }
    return;
  }
  view.busy = true;
  gallery.setBusy(item.id, true);
  showError("");
  setStatus("Regenerating…", { busy: true });
  try {
    const result = await hostRequest("tools/call", { name: "generate_image", arguments: args });
    let parsed = parseToolResult(result);
    while (parsed.ok && parsed.jobId && !FINAL_STATES.includes(parsed.status)) {
      setStatus(`Still ${parsed.status}…`, { busy: true });
      parsed = parseToolResult(await hostRequest("tools/call", {
        name: "get_generation",
        arguments: { job_id: parsed.jobId, wait_seconds: POLL_WAIT_SECONDS },
      }));
    }
    if (!parsed.ok) {
      showError(sentence(parsed.error ? parsed.error.message : parsed.text));
      setStatus(summary());
      return;
    }
    const items = itemsFromResult(parsed, { prompt: params.prompt, params: args });
    view.items = [...items, ...view.items];
    render();
  } catch (err) {
    showError(sentence(err.message));
    setStatus(summary());
  } finally {
    view.busy = false;
    gallery.setBusy(item.id, false);
  }
}

// --- size -----------------------------------------------------------------------------------------

let lastSize = "";
function reportSize() {
  const el = document.documentElement;
  const size = { width: Math.ceil(el.scrollWidth), height: Math.ceil(el.scrollHeight) };
  const key = `${size.width}x${size.height}`;
  if (key === lastSize) return;
  lastSize = key;
  hostNotify("ui/notifications/size-changed", size);
}

// --- start ----------------------------------------------------------------------------------------

async function start() {
  window.addEventListener("message", onMessage);
  if (window.parent === window) {
    setStatus("This is the in-chat viewer of MCP Image Server; a chat app that supports MCP Apps shows it next to a generate_image result.");
    return;
  }
  try {
    const init = await hostRequest("ui/initialize", {
      appInfo: { name: "mcp-image-server-viewer", version: "1.0.0" },
      appCapabilities: { availableDisplayModes: ["inline"] },
      protocolVersion: APPS_PROTOCOL,
    });
    view.hostCapabilities = (init && init.hostCapabilities) || {};
    applyHostContext(init && init.hostContext);
  } catch (err) {
    setStatus(`Could not start: ${err.message}`);
    return;
  }
  hostNotify("ui/notifications/initialized", {});
  let frame = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(reportSize);
  }).observe(document.documentElement);
  reportSize();
}

start();
