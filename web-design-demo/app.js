// Landing Studio: connect to an MCP Image Server, generate images with live progress, and
// design a landing page with them. No build step: plain ES modules.

import { McpHttpClient, McpError, describeError, capitalise } from "./mcp-client.js";
import { createGallery, parseToolResult, itemsFromResult, FINAL_STATES, copyText } from "./gallery.js";
import { LandingPreview, SLOTS, defaultPage, restorePage, exportHtml, slotLabel } from "./landing.js";
import { ProgressView } from "./progress.js";

const $ = (id) => document.getElementById(id);
const MAX_ITEMS = 60;
const CUSTOM = "__custom";
const WAIT_SECONDS = 40; // per call; longer jobs hand back a job_id that we poll
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

async function connect(event) {
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
    showAlert("connect-error", describeError(err, { url }));
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
  storage.set(localStorage, "wdd.remember", remember);
  storage.set(sessionStorage, "wdd.connected", true);
  onConnected();
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
  $("generate-button").disabled = false;
  if (!ready.length) toast("Connected, but the server has no provider configured.", { tone: "warn" });
  else if (!isNarrow()) toast(`Connected. Default provider: ${catalog.providers.default_provider}.`, { tone: "ok" });
}

async function disconnect({ quiet = false } = {}) {
  if (state.busy) cancelGeneration();
  const client = state.client;
  state.client = null;
  state.catalog = null;
  if (client) await client.close();
  $("generate-button").disabled = true;
  for (const id of ["provider", "style", "resolution"]) $(id).disabled = true;
  $("connect-button").hidden = false;
  $("disconnect-button").hidden = true;
  $("connected-info").hidden = true;
  storage.set(sessionStorage, "wdd.connected", null);
  if (!quiet) {
    setStatus("idle", "Not connected");
    setConnectOpen(true);
  }
}

// --- catalog -> form -------------------------------------------------------------------------

async function loadCatalog() {
  const client = state.client;
  const [providers, styles, resolutions] = await Promise.all([
    client.readJson("providers://list"),
    client.readJson("styles://list"),
    client.readJson("resolutions://list"),
  ]);
  state.catalog = { providers, styles, resolutions };
  const prefs = storage.get(localStorage, "wdd.form", {});
  const select = $("provider");
  select.replaceChildren();
  for (const p of providers.providers || []) {
    const option = new Option(`${p.display_name || p.name}${p.configured ? "" : " (not configured)"}`, p.name);
    option.disabled = !p.configured;
    select.append(option);
  }
  const configured = providers.configured || [];
  const preferred = configured.includes(prefs.provider) ? prefs.provider : providers.default_provider || configured[0];
  if (preferred) select.value = preferred;
  select.disabled = configured.length === 0;
  fillProviderOptions(prefs);
}

function orientation(res) {
  const m = /^(\d+)\s*[x×:*]\s*(\d+)$/i.exec(res);
  if (!m) return "";
  const [w, h] = [Number(m[1]), Number(m[2])];
  return w === h ? "square" : w > h ? "landscape" : "portrait";
}

function fillProviderOptions(prefs = {}) {
  const name = $("provider").value;
  const { providers, styles, resolutions } = state.catalog;
  const provider = (providers.providers || []).find((p) => p.name === name) || {};
  const styleInfo = styles[name] || { styles: provider.styles || [], default_style: provider.default_style };
  const resInfo = resolutions[name] || { resolutions: provider.resolutions || [], default_resolution: provider.default_resolution };

  const style = $("style");
  style.replaceChildren();
  for (const s of styleInfo.styles || []) style.append(new Option(s.label ? `${s.label}` : s.code, s.code));
  style.append(new Option("Other…", CUSTOM));
  const wantStyle = prefs.provider === name && prefs.style ? prefs.style : styleInfo.default_style;
  style.value = [...style.options].some((o) => o.value === wantStyle) ? wantStyle : style.options[0].value;
  style.disabled = false;

  const res = $("resolution");
  res.replaceChildren();
  for (const r of resInfo.resolutions || []) {
    const label = r.replace(/x/i, "×");
    const kind = orientation(r);
    res.append(new Option(kind ? `${label} · ${kind}` : label, r));
  }
  res.append(new Option("Other…", CUSTOM));
  const wantRes = prefs.provider === name && prefs.resolution ? prefs.resolution : resInfo.default_resolution;
  res.value = [...res.options].some((o) => o.value === wantRes) ? wantRes : res.options[0].value;
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
  syncCustomFields();
}

function syncCustomFields() {
  $("style-custom-field").hidden = $("style").value !== CUSTOM;
  $("resolution-custom-field").hidden = $("resolution").value !== CUSTOM;
}

function rememberForm() {
  storage.set(localStorage, "wdd.form", {
    provider: $("provider").value,
    style: $("style").value === CUSTOM ? null : $("style").value,
    resolution: $("resolution").value === CUSTOM ? null : $("resolution").value,
  });
}

/** Arguments for generate_image from the form, or an error sentence. */
function collectParams() {
  const prompt = $("prompt").value.trim();
  if (!prompt) return { error: "Describe the image you want in the prompt first.", field: "prompt" };
  const params = { prompt, provider: $("provider").value, n: Number($("count").value) || 1 };
  const style = $("style").value === CUSTOM ? $("style-custom").value.trim() : $("style").value;
  if ($("style").value === CUSTOM && !style) return { error: "Type a style code, or pick a style from the list.", field: "style-custom" };
  if (style) params.style = style;
  const resolution = $("resolution").value === CUSTOM ? $("resolution-custom").value.trim() : $("resolution").value;
  if ($("resolution").value === CUSTOM && !resolution) return { error: "Type a size such as 900x600, or pick one from the list.", field: "resolution-custom" };
  if (resolution) params.resolution = resolution;
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

async function runGeneration(params, signal) {
  const onProgress = (p) => progress.update(p);
  const options = { onProgress, signal, timeoutMs: (WAIT_SECONDS + 60) * 1000 };
  const args = { ...params, inline: "thumbnail", wait_seconds: WAIT_SECONDS, idempotency_key: randomKey() };
  let parsed = parseToolResult(await callWithReconnect("generate_image", args, options));
  while (parsed.ok && parsed.jobId && !FINAL_STATES.includes(parsed.status)) {
    state.busy.jobId = parsed.jobId;
    progress.note(`Still ${parsed.status}; waiting for job ${parsed.jobId.slice(0, 8)}…`);
    parsed = parseToolResult(
      await callWithReconnect("get_generation", { job_id: parsed.jobId, wait_seconds: WAIT_SECONDS }, options),
    );
  }
  return parsed;
}

async function generate(params, { label = "Generating…", sourceId = null } = {}) {
  if (!state.client) {
    showAlert("generate-error", "Connect to a server first.");
    setConnectOpen(true);
    $("server-url").focus();
    return;
  }
  if (state.busy) {
    toast("One generation at a time: wait for this one, or cancel it.");
    return;
  }
  showAlert("generate-error", "");
  const controller = new AbortController();
  state.busy = { controller, jobId: null, sourceId };
  if (sourceId) galleryView.setBusy(sourceId, true);
  const button = $("generate-button");
  button.disabled = true;
  button.textContent = "Generating…";
  progress.start(label);
  const startedAt = performance.now();
  try {
    const parsed = await runGeneration(params, controller.signal);
    if (!parsed.ok) {
      const text = toolErrorText(parsed.error || { message: parsed.text });
      showAlert("generate-error", text);
      progress.finish(text, { error: true });
      return;
    }
    const items = itemsFromResult(parsed, { prompt: params.prompt, params });
    state.items = [...items, ...state.items.filter((i) => !items.some((n) => n.id === i.id))].slice(0, MAX_ITEMS);
    saveItems();
    renderGallery();
    const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
    progress.finish(`${items.length} image${items.length === 1 ? "" : "s"} ready in ${seconds} s.`);
    for (const w of parsed.warnings) toast(capitalise(w), { tone: "warn", timeout: 8000 });
    if (state.autoPlace && items.length) {
      const slot = state.autoPlace;
      setAutoPlace(null);
      place(items[0], slot);
    } else if (isNarrow()) {
      toast(`${items.length} new image${items.length === 1 ? "" : "s"} in the gallery.`, {
        action: { label: "View", onClick: () => setView("gallery", { focus: true }) },
      });
    }
  } catch (err) {
    const text = describeError(err, { url: state.client?.url });
    if (err instanceof McpError && err.kind === "cancelled") {
      progress.finish("Cancelled. Nothing was added to the gallery.", { error: true });
    } else {
      showAlert("generate-error", text);
      progress.finish(text, { error: true });
    }
  } finally {
    if (sourceId) galleryView.setBusy(sourceId, false);
    state.busy = null;
    button.disabled = !state.client;
    button.textContent = "Generate";
  }
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
    { id: "regenerate", label: "Regenerate", icon: "refresh", iconOnly: true, title: "Regenerate: a new variation of this image" },
    { id: "copy-url", label: "Copy URL", icon: "link", secondary: true },
    { id: "copy-prompt", label: "Copy prompt", icon: "quote", secondary: true },
  ],
  badges: (item) => SLOTS.filter((s) => state.page.slots[s.id]?.id === item.id).map((s) => s.label),
  loadFallback: async (item) => {
    if (!state.client) return null;
    const result = await state.client.callTool("get_image_data", { image_id: item.id });
    const sc = result?.structuredContent;
    return sc?.ok && sc.base64 ? `data:${sc.mime_type};base64,${sc.base64}` : null;
  },
  onAction: async (action, item) => {
    if (action.startsWith("place:")) {
      place(item, action.slice(6));
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
  syncCustomFields();
  setAutoPlace(slotId);
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
    fillProviderOptions({});
    rememberForm();
  });
  for (const id of ["style", "resolution"]) {
    $(id).addEventListener("change", () => {
      syncCustomFields();
      rememberForm();
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
}

init();
