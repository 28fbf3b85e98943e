// Landing Studio: connect to an MCP Image Server, generate or edit images with live progress,
// and design a landing page with them. No build step: plain ES modules.

import { McpHttpClient, McpError, describeError, capitalise } from "./mcp-client.js";
import { createGallery, parseToolResult, itemsFromResult, FINAL_STATES, copyText, formatBytes } from "./gallery.js";
import { LandingPreview, SLOTS, defaultPage, restorePage, exportHtml, slotLabel } from "./landing.js";
import { ProgressView } from "./progress.js";
import { CompareView, MAX_UPLOAD_BYTES, describeSize, editorsFrom, fillAspectOptions, readUpload } from "./edit.js";

const $ = (id) => document.getElementById(id);
const MAX_ITEMS = 60;
const CUSTOM = "__custom";
const PROVIDER_DEFAULT = "Default (provider's own)"; // the first style / size option: send nothing
const FORM_KEY = "wdd.form.v2"; // {[provider]: {style, resolution}}: only what the person picked
const WAIT_SECONDS = 40; // per call; longer jobs hand back a job_id that we poll
const MAX_UPLOADS = 4; // uploaded originals kept in memory (never stored), for "Regenerate" on their edits
const PROMPT_IDEAS = [
  "Calm sea at sunset, pastel colours",
  "Neon city skyline at night",
  "Misty pine forest at dawn",
  "Snowy mountains, clear blue sky",
];

// --- storage ---------------------------------------------------------------------------------

const storage = {
  get(area, key, fallback) {
    try {
      const raw = area.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(area, key, value) {
    try {
      if (value === undefined || value === null) area.removeItem(key);
      else area.setItem(key, JSON.stringify(value));
    } catch {
      // storage full or disabled: the app keeps working, it just forgets on reload
    }
  },
};

function storable(item) {
  // Thumbnails are data URIs; keep them only when there is no URL to load the image from.
  const copy = { ...item };
  if (copy.url) delete copy.thumbnail;
  return copy;
}

// --- state -----------------------------------------------------------------------------------

const state = {
  client: null,
  catalog: null,
  items: storage.get(localStorage, "wdd.items", []).filter((i) => i && typeof i.id === "string"),
  page: restorePage(storage.get(localStorage, "wdd.page", null)),
  busy: null, // {controller, jobId, sourceId}
  autoPlace: null, // slot id the next generated image goes into
  mode: "generate", // or "edit": which form the Create pane shows
  editSource: null, // {kind: "image", id, url, thumbnail, ...} or {kind: "upload", key, name, size, ...}
  uploads: new Map(), // upload key -> data: URI
};

function saveItems() {
  storage.set(localStorage, "wdd.items", state.items.map(storable));
}

function savePage() {
  const slots = {};
  for (const [k, v] of Object.entries(state.page.slots)) slots[k] = v ? storable(v) : null;
  storage.set(localStorage, "wdd.page", { ...state.page, slots });
}

// --- toasts ----------------------------------------------------------------------------------

function toast(text, { action, tone = "info", timeout = 5000 } = {}) {
  const box = $("toasts");
  const node = document.createElement("div");
  node.className = `toast toast-${tone}`;
  const span = document.createElement("span");
  span.textContent = text;
  node.append(span);
  if (action) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "toast-action";
    b.textContent = action.label;
    b.addEventListener("click", () => {
      node.remove();
      action.onClick();
    });
    node.append(b);
  }
  box.append(node);
  while (box.children.length > (isNarrow() ? 2 : 3)) box.firstElementChild.remove();
  setTimeout(() => node.remove(), timeout);
}

function isNarrow() {
  return window.matchMedia("(max-width: 759px)").matches;
}

// --- views (phone tabs) ----------------------------------------------------------------------

function setView(view, { focus = false } = {}) {
  $("workspace").dataset.view = view;
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
  if (focus) $(view === "page" ? "page" : view).focus({ preventScroll: !isNarrow() });
}

// --- connection ------------------------------------------------------------------------------

function defaultUrl() {
  return location.protocol.startsWith("http") ? `${location.origin}/mcp` : "http://127.0.0.1:8000/mcp";
}

function normaliseUrl(raw) {
  const text = raw.trim() || defaultUrl();
  let url;
  try {
    url = new URL(text.includes("://") ? text : `http://${text}`);
  } catch {
    return null;
  }
  if (!/^https?:$/.test(url.protocol)) return null;
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/mcp";
  return url.toString();
}

function setStatus(kind, text, extra = "") {
  const button = $("status-button");
  button.dataset.state = kind;
  $("status-text").textContent = text;
  $("status-extra").textContent = extra;
}

function setConnectOpen(open) {
  $("connect").hidden = !open;
  $("status-button").setAttribute("aria-expanded", String(open));
}

function showAlert(id, text) {
  const node = $(id);
  node.textContent = text || "";
  node.hidden = !text;
}

async function connect(event, { tokenless = false } = {}) {
  event?.preventDefault();
  showAlert("connect-error", "");
  const url = normaliseUrl($("server-url").value);
  if (!url) {
    showAlert("connect-error", "That server URL is not a web address. It looks like http://127.0.0.1:8000/mcp.");
    $("server-url").focus();
    return;
  }
  $("server-url").value = url;
  const token = $("token").value.trim();
  // An empty token is a missing token, not a wrong one: ask for it before calling the server.
  // A server started without one (a loopback bind) is reached with the button the alert offers.
  tokenless = tokenless || (!token && storage.get(sessionStorage, "wdd.tokenless", false));
  if (!token && !tokenless) {
    askForToken();
    return;
  }
  await disconnect({ quiet: true });
  const client = new McpHttpClient({ url, token });
  const button = $("connect-button");
  button.disabled = true;
  button.textContent = "Connecting…";
  setStatus("connecting", "Connecting…");
  try {
    await client.connect();
    state.client = client;
    await loadCatalog();
  } catch (err) {
    state.client = null;
    client.close().catch(() => {});
    setStatus("error", "Connection failed");
    const auth = err instanceof McpError && err.kind === "auth";
    showAlert("connect-error", auth && !token
      ? "This server needs a token. Enter the token (MCP_AUTH_TOKEN) first: the one the server was started with."
      : describeError(err, { url }));
    $(err instanceof McpError && err.kind === "auth" ? "token" : "server-url").focus();
    return;
  } finally {
    button.disabled = false;
    button.textContent = "Connect";
  }
  const remember = $("remember").checked;
  storage.set(localStorage, "wdd.url", url);
  storage.set(localStorage, "wdd.token", remember ? token : null);
  storage.set(sessionStorage, "wdd.token", token);
  storage.set(sessionStorage, "wdd.tokenless", token ? null : true);
  storage.set(localStorage, "wdd.remember", remember);
  storage.set(sessionStorage, "wdd.connected", true);
  onConnected();
}

function askForToken() {
  const node = $("connect-error");
  const text = document.createElement("span");
  text.textContent = "Enter the token (MCP_AUTH_TOKEN) first: the one the server was started with. ";
  const without = document.createElement("button");
  without.type = "button";
  without.className = "link-button";
  without.id = "connect-tokenless";
  without.textContent = "The server has no token: connect without one";
  without.addEventListener("click", () => connect(null, { tokenless: true }));
  node.replaceChildren(text, without);
  node.hidden = false;
  setStatus("idle", "Not connected");
  $("token").focus();
}

function onConnected() {
  const { client, catalog } = state;
  const info = client.serverInfo || {};
  const ready = catalog.providers.configured || [];
  setStatus("ok", "Connected", ` · ${ready.length} provider${ready.length === 1 ? "" : "s"}`);
  const text = `Connected to ${info.title || info.name || "the server"} ${info.version || ""} at ${client.url}. ` +
    `Providers ready: ${ready.join(", ") || "none"}.`;
  const node = $("connected-info");
  node.textContent = text;
  node.hidden = false;
  $("connect-button").hidden = true;
  $("disconnect-button").hidden = false;
  setConnectOpen(false);
  syncButtons();
  if (!ready.length) toast("Connected, but the server has no provider configured.", { tone: "warn" });
  else if (!isNarrow()) toast(`Connected. Default provider: ${catalog.providers.default_provider}.`, { tone: "ok" });
}

async function disconnect({ quiet = false } = {}) {
  if (state.busy) cancelGeneration();
  const client = state.client;
  state.client = null;
  state.catalog = null;
  if (client) await client.close();
  syncButtons();
  for (const id of ["provider", "style", "resolution", "aspect", "quality", "edit-provider", "edit-aspect"]) $(id).disabled = true;
  $("connect-button").hidden = false;
  $("disconnect-button").hidden = true;
  $("connected-info").hidden = true;
  storage.set(sessionStorage, "wdd.connected", null);
  if (!quiet) {
    storage.set(sessionStorage, "wdd.tokenless", null);
    setStatus("idle", "Not connected");
    setConnectOpen(true);
  }
}

// --- catalog -> form -------------------------------------------------------------------------

async function loadCatalog() {
  const client = state.client;
  const [providers, styles, resolutions, listed, tools] = await Promise.all([
    client.readJson("providers://list"),
    client.readJson("styles://list"),
    client.readJson("resolutions://list"),
    // Which providers can edit, from the list_providers tool; a server without it just can't edit.
    client.callTool("list_providers", {}).then((r) => (r?.isError ? null : r?.structuredContent), () => null),
    // The tools' own argument limits (the prompt's maxLength), so the form allows what the server does.
    client.request("tools/list", {}).then((r) => r?.tools || [], () => []),
  ]);
  state.catalog = { providers, styles, resolutions, editors: editorsFrom(listed), limits: limitsFrom(tools) };
  const select = $("provider");
  select.replaceChildren();
  // Providers without credentials are listed (so a newcomer sees what exists) in their own group,
  // which keeps "(not configured)" out of each option's text, so the select stays narrow.
  const unconfigured = document.createElement("optgroup");
  unconfigured.label = "Not configured on this server";
  for (const p of providers.providers || []) {
    const option = new Option(p.display_name || p.name, p.name);
    option.title = p.configured ? p.name : `${p.name}: not configured on this server`;
    option.disabled = !p.configured;
    (p.configured ? select : unconfigured).append(option);
  }
  if (unconfigured.children.length) select.append(unconfigured);
  const configured = providers.configured || [];
  // The server's default provider, never whichever (maybe paid) one happens to be listed first.
  // A provider picked by hand is kept for this tab only (a reload keeps it; a new visit starts at the default).
  const picked = storage.get(sessionStorage, "wdd.provider", null);
  const preferred = configured.includes(picked) ? picked
    : configured.includes(providers.default_provider) ? providers.default_provider : configured[0];
  if (preferred) select.value = preferred;
  select.disabled = configured.length === 0;
  fillProviderOptions();
  fillEditProviders();
  applyPromptLimits();
}

/** {generate_image: {prompt, negative_prompt}, edit_image: {prompt}}: maxLength of each string argument. */
function limitsFrom(tools) {
  const out = {};
  for (const tool of tools) {
    const props = tool?.inputSchema?.properties || {};
    const limits = {};
    for (const [name, schema] of Object.entries(props)) {
      const max = maxLengthOf(schema);
      if (max) limits[name] = max;
    }
    out[tool?.name] = limits;
  }
  return out;
}

function maxLengthOf(schema) {
  if (!schema || typeof schema !== "object") return null;
  if (Number.isInteger(schema.maxLength)) return schema.maxLength;
  for (const alt of schema.anyOf || schema.oneOf || []) {
    const max = maxLengthOf(alt);
    if (max) return max;
  }
  return null;
}

/** maxlength of a prompt box: the tool's own limit, and the provider's (the server checks both). */
function applyPromptLimits() {
  const { limits = {}, providers } = state.catalog || {};
  const byName = (name) => (providers?.providers || []).find((p) => p.name === name) || {};
  const set = (id, ...limitsInOrder) => {
    const known = limitsInOrder.filter((n) => Number.isInteger(n) && n > 0);
    if (known.length) $(id).maxLength = Math.min(...known);
  };
  set("prompt", limits.generate_image?.prompt, byName($("provider").value).max_prompt_chars);
  set("negative", limits.generate_image?.negative_prompt);
  set("edit-prompt", limits.edit_image?.prompt, byName($("edit-provider").value).max_prompt_chars);
}

function orientation(res) {
  const m = /^(\d+)\s*[x×:*]\s*(\d+)$/i.exec(res);
  if (!m) return "";
  const [w, h] = [Number(m[1]), Number(m[2])];
  return w === h ? "square" : w > h ? "landscape" : "portrait";
}

function fillProviderOptions() {
  const name = $("provider").value;
  const prefs = storage.get(localStorage, FORM_KEY, {})?.[name] || {};
  const { providers, styles, resolutions } = state.catalog;
  const provider = (providers.providers || []).find((p) => p.name === name) || {};
  const styleInfo = styles[name] || { styles: provider.styles || [], default_style: provider.default_style };
  const resInfo = resolutions[name] || { resolutions: provider.resolutions || [], default_resolution: provider.default_resolution };

  const style = $("style");
  style.replaceChildren(defaultOption(styleInfo.default_style ? `the provider's default style: ${styleInfo.default_style}` : ""));
  for (const s of styleInfo.styles || []) {
    const option = new Option(s.label ? `${s.label}` : s.code, s.code);
    option.title = s.code;
    style.append(option);
  }
  style.append(new Option("Other…", CUSTOM));
  // Only a style the person picked for this provider; otherwise none: the provider's own default.
  style.value = [...style.options].some((o) => o.value === prefs.style) ? prefs.style : "";
  style.disabled = false;

  const res = $("resolution");
  res.replaceChildren(defaultOption(resInfo.default_resolution ? `the provider's default size: ${resInfo.default_resolution}` : ""));
  for (const r of resInfo.resolutions || []) {
    const label = r.replace(/x/i, "×");
    const kind = orientation(r);
    res.append(new Option(kind ? `${label} · ${kind}` : label, r));
  }
  res.append(new Option("Other…", CUSTOM));
  res.value = [...res.options].some((o) => o.value === prefs.resolution) ? prefs.resolution : "";
  res.disabled = false;

  const count = $("count");
  const max = provider.max_n || 4;
  for (const o of count.options) o.disabled = Number(o.value) > max;
  if (Number(count.value) > max) count.value = String(max);

  const format = $("format");
  const formats = provider.formats || ["png", "jpeg", "webp"];
  for (const o of format.options) o.disabled = !formats.includes(o.value);
  if (!formats.includes(format.value)) format.value = formats[0];

  $("seed").disabled = provider.supports_seed === false;
  $("negative").disabled = provider.supports_negative_prompt === false;

  fillAspectOptions($("aspect"), provider, "From size");
  $("aspect").disabled = false;
  const quality = $("quality");
  // A provider without a quality mapping would only ignore it (with a warning): offer none.
  quality.disabled = !provider.quality;
  if (quality.disabled) quality.value = "";
  applyPromptLimits();
  syncCustomFields();
}

/** "Default (provider's own)": the value "" sends nothing, so the server applies the provider's default. */
function defaultOption(title) {
  const option = new Option(PROVIDER_DEFAULT, "");
  if (title) option.title = title;
  return option;
}

function syncCustomFields() {
  // An aspect ratio picks the size, so the size list steps aside while one is chosen.
  const byAspect = $("aspect").value !== "";
  if (state.catalog) $("resolution").disabled = byAspect;
  $("style-custom-field").hidden = $("style").value !== CUSTOM;
  $("resolution-custom-field").hidden = byAspect || $("resolution").value !== CUSTOM;
}

/** Remember the style or size the person just picked, for this provider. */
function rememberForm(field) {
  const all = storage.get(localStorage, FORM_KEY, {}) || {};
  const provider = $("provider").value;
  const value = $(field).value;
  all[provider] = { ...(all[provider] || {}), [field]: value === CUSTOM || !value ? null : value };
  storage.set(localStorage, FORM_KEY, all);
}

/** Arguments for generate_image from the form, or an error sentence. */
function collectParams() {
  const prompt = $("prompt").value.trim();
  if (!prompt) return { error: "Describe the image you want in the prompt first.", field: "prompt" };
  const params = { prompt, n: Number($("count").value) || 1 };
  if ($("provider").value) params.provider = $("provider").value;
  const style = $("style").value === CUSTOM ? $("style-custom").value.trim() : $("style").value;
  if ($("style").value === CUSTOM && !style) return { error: "Type a style code, or pick a style from the list.", field: "style-custom" };
  if (style) params.style = style;
  const aspect = $("aspect").value;
  if (aspect) {
    params.aspect_ratio = aspect;
  } else {
    const resolution = $("resolution").value === CUSTOM ? $("resolution-custom").value.trim() : $("resolution").value;
    if ($("resolution").value === CUSTOM && !resolution) return { error: "Type a size such as 900x600, or pick one from the list.", field: "resolution-custom" };
    if (resolution) params.resolution = resolution;
  }
  if ($("quality").value && !$("quality").disabled) params.quality = $("quality").value;
  const negative = $("negative").value.trim();
  if (negative && !$("negative").disabled) params.negative_prompt = negative;
  const seedText = $("seed").value.trim();
  if (seedText && !$("seed").disabled) {
    const seed = Number(seedText);
    if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
      return { error: "The seed must be a whole number from 0 to 4294967295, or empty for a random one.", field: "seed" };
    }
    params.seed = seed;
  }
  params.output_format = $("format").value;
  return { params };
}

// --- generation ------------------------------------------------------------------------------

const progress = new ProgressView({
  box: $("progress"),
  title: $("progress-title"),
  time: $("progress-time"),
  bar: $("progress-bar"),
  fill: $("progress-fill"),
  msg: $("progress-msg"),
  log: $("progress-log"),
  cancel: $("cancel-button"),
  details: $("progress-details"),
  ids: $("progress-ids"),
});

function randomKey() {
  if (crypto.randomUUID && window.isSecureContext) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function toolErrorText(error) {
  let text = capitalise(error.message || "The server could not generate the image.");
  if (!/[.!?]$/.test(text)) text += ".";
  const retry = error.details && (error.details.retry_after || error.details.retry_after_s);
  if (error.code === "rate_limited" && retry) text += ` Try again in ${Math.ceil(retry)} s.`;
  return text;
}

/** Call a tool; if the connection drops, reconnect once and repeat (generation is idempotent by key). */
async function callWithReconnect(name, args, options) {
  try {
    return await state.client.callTool(name, args, options);
  } catch (err) {
    if (!(err instanceof McpError) || err.kind !== "network" || options.signal?.aborted) throw err;
    progress.note("Connection dropped, reconnecting…");
    await state.client.connect();
    return state.client.callTool(name, args, options);
  }
}

async function runGeneration(tool, params, signal) {
  const onProgress = (p) => progress.update(p);
  const options = { onProgress, signal, timeoutMs: (WAIT_SECONDS + 60) * 1000 };
  const args = { ...params, inline: "thumbnail", wait_seconds: WAIT_SECONDS, idempotency_key: randomKey() };
  let parsed = parseToolResult(await callWithReconnect(tool, args, options));
  while (parsed.ok && parsed.jobId && !FINAL_STATES.includes(parsed.status)) {
    state.busy.jobId = parsed.jobId;
    progress.addId("Server job", parsed.jobId);
    progress.note(`Still ${parsed.status}; waiting for the server to finish it…`);
    parsed = parseToolResult(
      await callWithReconnect("get_generation", { job_id: parsed.jobId, wait_seconds: WAIT_SECONDS }, options),
    );
  }
  return parsed;
}

function syncButtons() {
  const busy = state.busy?.button;
  $("generate-button").disabled = !state.client || busy === $("generate-button");
  $("edit-button").disabled = !state.client || !state.catalog?.editors?.length || busy === $("edit-button");
}

/**
 * The one path of generate_image and edit_image: busy state, live progress, polling, the result
 * into the gallery, errors into the error box. Resolves to the new gallery items, or null.
 *
 *   job: {tool, args, label, button, busyText, failTitle, request: {prompt, params}, extra, sourceId}
 */
async function runJob({ tool, args, label, button, busyText, failTitle, request, extra = {}, sourceId = null }) {
  if (!state.client) {
    showAlert("generate-error", "Connect to a server first.");
    setConnectOpen(true);
    $("server-url").focus();
    return null;
  }
  if (state.busy) {
    toast("One generation at a time: wait for this one, or cancel it.");
    return null;
  }
  showAlert("generate-error", "");
  const controller = new AbortController();
  state.busy = { controller, jobId: null, sourceId, button };
  if (sourceId) galleryView.setBusy(sourceId, true);
  const idleText = button.textContent;
  button.disabled = true;
  button.textContent = busyText;
  progress.start(label, { failTitle });
  $("progress").scrollIntoView({ block: "nearest" });
  const startedAt = performance.now();
  try {
    const parsed = await runGeneration(tool, args, controller.signal);
    if (parsed.jobId) progress.addId("Server job", parsed.jobId);
    if (!parsed.ok) {
      const text = progress.clean(toolErrorText(parsed.error || { message: parsed.text }));
      showAlert("generate-error", text);
      progress.finish(text, { error: true });
      return null;
    }
    const items = itemsFromResult(parsed, request).map((item) => ({ ...item, ...extra }));
    state.items = [...items, ...state.items.filter((i) => !items.some((n) => n.id === i.id))].slice(0, MAX_ITEMS);
    saveItems();
    renderGallery();
    const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
    progress.finish(`${items.length} image${items.length === 1 ? "" : "s"} ready in ${seconds} s.`);
    for (const w of parsed.warnings) toast(capitalise(progress.clean(w)), { tone: "warn", timeout: 8000 });
    return items;
  } catch (err) {
    const text = describeError(err, { url: state.client?.url });
    if (err instanceof McpError && err.kind === "cancelled") {
      progress.finish("Cancelled. Nothing was added to the gallery.", { error: true });
    } else {
      showAlert("generate-error", text);
      progress.finish(text, { error: true });
    }
    return null;
  } finally {
    if (sourceId) galleryView.setBusy(sourceId, false);
    state.busy = null;
    button.textContent = idleText;
    syncButtons();
  }
}

async function generate(params, { label = "Generating…", sourceId = null } = {}) {
  const items = await runJob({
    tool: "generate_image",
    args: params,
    label,
    button: $("generate-button"),
    busyText: "Generating…",
    request: { prompt: params.prompt, params },
    sourceId,
  });
  if (!items) return;
  if (state.autoPlace && items.length) {
    const slot = state.autoPlace;
    setAutoPlace(null);
    place(items[0], slot);
  } else if (isNarrow()) {
    toast(`${items.length} new image${items.length === 1 ? "" : "s"} in the gallery.`, {
      action: { label: "View", onClick: () => setView("gallery", { focus: true }) },
    });
  }
}

// --- editing ---------------------------------------------------------------------------------

const compare = new CompareView({
  before: { img: $("edit-before"), frame: $("edit-before-frame"), empty: $("edit-before-empty") },
  after: { img: $("edit-after"), frame: $("edit-after-frame"), empty: $("edit-after-empty") },
  info: $("edit-source-info"),
});
const AFTER_EMPTY = "The edited image appears here.";

function setMode(mode) {
  state.mode = mode;
  for (const b of document.querySelectorAll(".mode")) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
  $("generate-form").hidden = mode !== "generate";
  $("edit-form").hidden = mode !== "edit";
  $("create-title").textContent = mode === "edit" ? "Edit an image" : "Create images";
}

function fillEditProviders() {
  const select = $("edit-provider");
  const { editors, providers } = state.catalog;
  select.replaceChildren();
  for (const p of editors) select.append(new Option(p.display_name || p.name, p.name));
  if (!editors.length) select.append(new Option("None can edit", ""));
  const preferred = editors.find((p) => p.name === providers.default_provider) || editors[0];
  if (preferred) select.value = preferred.name;
  select.disabled = editors.length === 0;
  fillEditOptions();
}

function fillEditOptions() {
  const editor = (state.catalog?.editors || []).find((p) => p.name === $("edit-provider").value);
  const notes = $("edit-provider-notes");
  if (!editor) {
    notes.textContent = "None of this server's configured providers can edit images.";
    $("edit-aspect").disabled = true;
    syncButtons();
    return;
  }
  fillAspectOptions($("edit-aspect"), editor, "Original");
  $("edit-aspect").disabled = false;
  const most = editor.edit.max_images;
  notes.textContent = editor.edit.notes || `Takes up to ${most} image${most === 1 ? "" : "s"}${editor.edit.mask ? " and a mask" : ""}.`;
  notes.title = notes.textContent;
  syncButtons();
}

/** Show `source` as the image to edit (Before); After goes back to its placeholder. */
async function setEditSource(source) {
  state.editSource = source;
  compare.show("after", null, AFTER_EMPTY);
  const label = source.kind === "upload" ? source.name : source.prompt || `image ${source.id.slice(0, 8)}`;
  const where = source.kind === "upload" ? "Uploaded" : "From the gallery";
  compare.note(`${where}: ${label}${describeSize(source) ? ` · ${describeSize(source)}` : ""}`);
  const shown = await compare.show("before", {
    sources: source.kind === "upload" ? [state.uploads.get(source.key)] : [source.url, source.thumbnail],
    alt: `Before: ${label}`,
    href: source.url,
    width: source.width,
    height: source.height,
    missing: source.kind === "upload" ? "Your browser can't show this file as an image." : "Image no longer available on the server",
  }, "");
  if (state.editSource !== source) return;
  if (shown && source.kind === "upload") {
    Object.assign(source, shown);
    compare.note(`${where}: ${label} · ${describeSize(source)}`);
  } else if (!shown && source.kind === "upload") {
    compare.note(`${where}: ${label} · ${describeSize(source)} · not an image your browser can show`);
  }
}

/** A gallery item (or what an edit remembers of one) as the image to edit. */
function imageSource(item) {
  return {
    kind: "image", id: item.id, url: item.url || null, thumbnail: item.thumbnail || null, prompt: item.prompt,
    width: item.width, height: item.height, size: item.sizeBytes,
  };
}

function editFrom(item) {
  $("edit-file").value = "";
  setEditSource(imageSource(item));
  setMode("edit");
  setView("create");
  $("edit-prompt").focus();
}

async function onUpload() {
  const file = $("edit-file").files[0];
  if (!file) return;
  showAlert("generate-error", "");
  const upload = await readUpload(file, MAX_UPLOAD_BYTES);
  if (upload.error) {
    $("edit-file").value = "";
    showAlert("generate-error", upload.error);
    $("edit-file").focus();
    return;
  }
  const key = randomKey();
  state.uploads.set(key, upload.dataUri);
  while (state.uploads.size > MAX_UPLOADS) state.uploads.delete(state.uploads.keys().next().value);
  await setEditSource({ kind: "upload", key, name: upload.name, size: upload.size });
}

/** Arguments for edit_image from the edit form (without the image), or an error sentence. */
function collectEditParams() {
  if (!state.editSource) {
    return { error: "Pick the image to edit first: press Edit on a gallery image, or upload one.", field: "edit-file" };
  }
  const prompt = $("edit-prompt").value.trim();
  if (!prompt) return { error: "Describe the change you want first.", field: "edit-prompt" };
  const params = { prompt };
  if ($("edit-provider").value) params.provider = $("edit-provider").value;
  if ($("edit-aspect").value) params.aspect_ratio = $("edit-aspect").value;
  return { params };
}

/** edit_image on `source`; the result goes into the gallery and the After side. */
async function edit(source, params, { label = "Editing…", sourceId = null } = {}) {
  const image = source.kind === "upload" ? state.uploads.get(source.key) : source.id;
  if (!image) {
    toast("The uploaded original is no longer in memory: upload it again.", { tone: "warn" });
    return;
  }
  const { kind, id, key, name, url, prompt, width, height } = source;
  if (state.client && !state.busy) compare.show("after", null, "Editing…");
  const items = await runJob({
    tool: "edit_image",
    args: { ...params, images: [image] },
    label,
    button: $("edit-button"),
    busyText: "Editing…",
    failTitle: "Not edited",
    request: { prompt: params.prompt, params },
    // What was edited, so "Regenerate" edits it again; an upload is named by its in-memory key.
    extra: { edit: { kind, id, key, name, url, prompt, width, height } },
    sourceId: sourceId || (kind === "image" ? id : null),
  });
  if (state.editSource !== source) return;
  const after = items?.[0];
  if (!after) {
    compare.show("after", null, AFTER_EMPTY);
    return;
  }
  await compare.show("after", {
    sources: [after.url, after.thumbnail],
    alt: `After: ${after.prompt}`,
    href: after.url,
    width: after.width,
    height: after.height,
  }, AFTER_EMPTY);
}

/** "Regenerate" on an edited image: the same edit of the same original, again. */
function editAgain(item) {
  if (state.busy) {
    toast("One generation at a time: wait for this one, or cancel it.");
    return undefined;
  }
  const original = item.edit;
  let source;
  if (original.kind === "upload") {
    if (!state.uploads.has(original.key)) {
      toast("The uploaded original is only kept until the page reloads: upload it again under Edit.", { tone: "warn" });
      return undefined;
    }
    source = { kind: "upload", key: original.key, name: original.name, width: original.width, height: original.height };
  } else {
    source = imageSource(state.items.find((i) => i.id === original.id) || original);
  }
  const { seed, ...params } = item.params || { prompt: item.prompt };
  setMode("edit");
  setEditSource(source);
  $("edit-prompt").value = params.prompt || "";
  return edit(source, params, { label: "Editing again…", sourceId: item.id });
}

function cancelGeneration() {
  const busy = state.busy;
  if (!busy) return;
  $("cancel-button").disabled = true;
  progress.note("Cancelling…");
  busy.controller.abort();
  if (busy.jobId && state.client) state.client.callTool("cancel_generation", { job_id: busy.jobId }).catch(() => {});
}

function setAutoPlace(slotId) {
  state.autoPlace = slotId;
  const note = $("create-target");
  if (!slotId) {
    note.hidden = true;
    note.replaceChildren();
    return;
  }
  const text = document.createElement("span");
  text.textContent = `The next image goes into: ${slotLabel(slotId)}`;
  const clear = document.createElement("button");
  clear.type = "button";
  clear.className = "link-button";
  clear.textContent = "Don't";
  clear.setAttribute("aria-label", `Don't put the next image into ${slotLabel(slotId)}`);
  clear.addEventListener("click", () => setAutoPlace(null));
  note.replaceChildren(text, clear);
  note.hidden = false;
}

// --- gallery ---------------------------------------------------------------------------------

const galleryView = createGallery($("gallery-root"), {
  label: "Generated images",
  emptyText: "Your images will appear here. Write a prompt and press Generate.",
  actions: [
    { id: "place", label: "Use in page", menu: SLOTS.map((s) => ({ id: `place:${s.id}`, label: `${s.label}` })) },
    { id: "edit", label: "Edit", icon: "edit", title: "Edit: describe a change to this image" },
    { id: "regenerate", label: "Regenerate", icon: "refresh", iconOnly: true, title: "Regenerate: a new variation of this image" },
    { id: "copy-url", label: "Copy URL", icon: "link", secondary: true },
    { id: "copy-prompt", label: "Copy prompt", icon: "quote", secondary: true },
  ],
  badges: (item) => [
    ...(item.edit ? ["Edited"] : []),
    ...SLOTS.filter((s) => state.page.slots[s.id]?.id === item.id).map((s) => s.label),
  ],
  loadFallback: async (item) => {
    if (!state.client) return null;
    const result = await state.client.callTool("get_image_data", { image_id: item.id });
    const sc = result?.structuredContent;
    return sc?.ok && sc.base64 ? `data:${sc.mime_type};base64,${sc.base64}` : null;
  },
  onAction: async (action, item) => {
    if (action.startsWith("place:")) {
      place(item, action.slice(6));
    } else if (action === "edit") {
      editFrom(item);
    } else if (action === "regenerate" && item.edit) {
      await editAgain(item);
    } else if (action === "regenerate") {
      const base = item.params || { prompt: item.prompt, provider: item.provider, style: item.style, resolution: item.resolution };
      const { seed, ...params } = base;
      await generate({ ...params, n: 1 }, { label: "Regenerating…", sourceId: item.id });
    } else if (action === "copy-url") {
      if (!item.url) {
        toast("This image has no URL: the server was started without a public base URL.", { tone: "warn" });
        return;
      }
      toast((await copyText(item.url)) ? "Image URL copied." : "Couldn't copy. Your browser blocked the clipboard.", { tone: "ok" });
    } else if (action === "copy-prompt") {
      toast((await copyText(item.prompt)) ? "Prompt copied." : "Couldn't copy. Your browser blocked the clipboard.", { tone: "ok" });
    }
  },
});

function renderGallery() {
  galleryView.render(state.items);
  $("clear-gallery").hidden = state.items.length === 0;
  const count = $("tab-count");
  count.textContent = String(state.items.length);
  count.hidden = state.items.length === 0;
}

// --- page ------------------------------------------------------------------------------------

const preview = new LandingPreview($("landing-root"), {
  onEdit: (path, value) => {
    const parts = path.split(".");
    if (parts[0] === "features") state.page.features[Number(parts[1])][parts[2]] = value;
    else state.page[parts[0]] = value;
    if (path === "brand") {
      preview.update(state.page);
      updateAddress();
    }
    savePage();
  },
  onSlot: (action, slotId) => {
    if (action === "clear") {
      const previous = state.page.slots[slotId];
      state.page.slots[slotId] = null;
      afterPageChange();
      toast(`${slotLabel(slotId)} cleared.`, {
        action: { label: "Undo", onClick: () => { state.page.slots[slotId] = previous; afterPageChange(); } },
      });
      return;
    }
    prepareSlotGeneration(slotId);
  },
});

function updateAddress() {
  const slug = state.page.brand.toLowerCase().replace(/[^a-z0-9]+/g, "") || "yourbrand";
  $("preview-address").textContent = `${slug}.com`;
}

function afterPageChange() {
  savePage();
  preview.update(state.page);
  renderGallery();
}

function place(item, slotId) {
  state.page.slots[slotId] = storable(item);
  if (!item.url && item.thumbnail) state.page.slots[slotId].thumbnail = item.thumbnail;
  afterPageChange();
  preview.flash(slotId);
  toast(`Placed in ${slotLabel(slotId)}.`, {
    tone: "ok",
    action: isNarrow() ? { label: "View page", onClick: () => setView("page", { focus: true }) } : undefined,
  });
}

function prepareSlotGeneration(slotId) {
  const slot = SLOTS.find((s) => s.id === slotId);
  const prompt = $("prompt");
  if (!prompt.value.trim()) {
    const page = state.page;
    prompt.value = slotId === "hero"
      ? `${page.headline}, wide cinematic banner`
      : `${page.features[Number(slotId.split("-")[1]) - 1].title}, ${page.features[Number(slotId.split("-")[1]) - 1].body}`;
  }
  const res = $("resolution");
  if ([...res.options].some((o) => o.value === slot.resolution)) res.value = slot.resolution;
  $("count").value = "1";
  $("aspect").value = "";
  syncCustomFields();
  setAutoPlace(slotId);
  setMode("generate");
  setView("create");
  prompt.focus();
  prompt.select();
}

async function downloadPage() {
  let css = "";
  try {
    css = await (await fetch("landing.css", { cache: "no-store" })).text();
  } catch {
    css = "";
  }
  const html = exportHtml(state.page, css);
  const blob = new Blob([html], { type: "text/html" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${state.page.brand.toLowerCase().replace(/[^a-z0-9]+/g, "-") || "landing"}-page.html`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// --- wiring ----------------------------------------------------------------------------------

function init() {
  storage.set(localStorage, "wdd.form", null); // an older page's form memory (it also kept a provider)
  const remember = storage.get(localStorage, "wdd.remember", false);
  $("server-url").value = storage.get(localStorage, "wdd.url", null) || defaultUrl();
  $("token").value = storage.get(sessionStorage, "wdd.token", null) ?? storage.get(localStorage, "wdd.token", null) ?? "";
  $("remember").checked = Boolean(remember);

  $("connect-form").addEventListener("submit", connect);
  $("disconnect-button").addEventListener("click", () => disconnect());
  $("status-button").addEventListener("click", () => {
    const open = $("connect").hidden;
    setConnectOpen(open);
    if (open) $(state.client ? "disconnect-button" : "server-url").focus();
  });
  $("token-toggle").addEventListener("click", (e) => {
    const field = $("token");
    const show = field.type === "password";
    field.type = show ? "text" : "password";
    e.currentTarget.textContent = show ? "Hide" : "Show";
    e.currentTarget.setAttribute("aria-pressed", String(show));
  });

  $("provider").addEventListener("change", () => {
    storage.set(sessionStorage, "wdd.provider", $("provider").value);
    fillProviderOptions();
  });
  for (const id of ["style", "resolution"]) {
    $(id).addEventListener("change", () => {
      syncCustomFields();
      rememberForm(id);
      if ($(id).value === CUSTOM) $(`${id}-custom`).focus();
    });
  }
  $("generate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const { params, error, field } = collectParams();
    if (error) {
      showAlert("generate-error", error);
      $(field).focus();
      return;
    }
    generate(params);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) $("generate-form").requestSubmit();
  });
  $("cancel-button").addEventListener("click", cancelGeneration);

  $("aspect").addEventListener("change", syncCustomFields);
  for (const b of document.querySelectorAll(".mode")) {
    b.addEventListener("click", () => {
      setMode(b.dataset.mode);
      $(b.dataset.mode === "edit" ? (state.editSource ? "edit-prompt" : "edit-file") : "prompt").focus();
    });
  }
  $("edit-file").addEventListener("change", onUpload);
  $("edit-provider").addEventListener("change", () => {
    fillEditOptions();
    applyPromptLimits();
  });
  $("edit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const { params, error, field } = collectEditParams();
    if (error) {
      showAlert("generate-error", error);
      $(field).focus();
      return;
    }
    edit(state.editSource, params);
  });
  $("edit-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) $("edit-form").requestSubmit();
  });
  $("edit-file-hint").textContent = `PNG, JPEG or WebP, up to ${formatBytes(MAX_UPLOAD_BYTES)}.`;

  const ideas = $("prompt-ideas");
  for (const idea of PROMPT_IDEAS) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = idea;
    b.addEventListener("click", () => {
      $("prompt").value = idea;
      $("prompt").focus();
    });
    ideas.append(b);
  }

  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => setView(tab.dataset.view));

  $("clear-gallery").addEventListener("click", () => {
    const previous = state.items;
    state.items = [];
    saveItems();
    renderGallery();
    toast("Gallery cleared.", { action: { label: "Undo", onClick: () => { state.items = previous; saveItems(); renderGallery(); } } });
  });
  $("accent").value = state.page.accent;
  $("accent").addEventListener("input", (e) => {
    state.page.accent = e.target.value;
    preview.update(state.page);
    savePage();
  });
  $("download-page").addEventListener("click", downloadPage);
  $("reset-page").addEventListener("click", () => {
    const previous = state.page;
    state.page = defaultPage();
    $("accent").value = state.page.accent;
    preview.build(state.page);
    updateAddress();
    afterPageChange();
    toast("Page reset.", {
      action: {
        label: "Undo",
        onClick: () => {
          state.page = previous;
          $("accent").value = previous.accent;
          preview.build(previous);
          updateAddress();
          afterPageChange();
        },
      },
    });
  });

  preview.build(state.page);
  updateAddress();
  renderGallery();
  setStatus("idle", "Not connected");
  window.addEventListener("pagehide", () => state.client?.close({ keepalive: true }));

  // Reconnect after a reload in the same tab, or on a device that remembers the token.
  if (storage.get(sessionStorage, "wdd.connected", false) || (remember && $("token").value)) connect();
  $("token").addEventListener("input", () => {
    if ($("token").value && $("connect-tokenless")) showAlert("connect-error", "");
  });
}

init();
