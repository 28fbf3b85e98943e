// The image gallery: turning generate_image / get_generation results into cards, and
// rendering those cards. Shared by the web-design demo and the in-chat MCP Apps viewer
// (mcp_image_server/viewer.py inlines this file into the viewer's HTML), so it has no
// imports, touches nothing outside the element it is given, and builds every node with
// DOM APIs (prompts are user text: never innerHTML).

/** Parse a CallToolResult of generate_image / get_generation. */
export function parseToolResult(result) {
  const sc = (result && result.structuredContent) || {};
  const content = Array.isArray(result && result.content) ? result.content : [];
  const text = content.filter((b) => b && b.type === "text").map((b) => b.text).join("\n");
  const thumbnails = content
    .filter((b) => b && b.type === "image" && b.data)
    .map((b) => `data:${b.mimeType || "image/png"};base64,${b.data}`);
  let error = sc.error || null;
  if (!error && result && result.isError) error = { code: "error", message: text || "The tool failed.", details: {} };
  return {
    ok: !error && sc.ok !== false,
    status: sc.status || (error ? "failed" : "succeeded"),
    jobId: sc.job_id || null,
    message: sc.message || "",
    warnings: Array.isArray(sc.warnings) ? sc.warnings : [],
    images: Array.isArray(sc.images) ? sc.images : [],
    thumbnails,
    error,
    text,
  };
}

/** Job states after which get_generation will not change any more. */
export const FINAL_STATES = ["succeeded", "failed", "cancelled"];

/** Gallery items from a parsed result; `request` is what was asked for (prompt and arguments). */
export function itemsFromResult(parsed, request = {}) {
  const createdAt = request.createdAt || Date.now();
  return parsed.images.map((img, i) => ({
    id: img.image_id,
    prompt: request.prompt || img.revised_prompt || "",
    revisedPrompt: img.revised_prompt || null,
    params: request.params || null,
    provider: img.provider,
    model: img.model,
    style: img.style,
    resolution: img.resolution,
    width: img.width,
    height: img.height,
    mimeType: img.mime_type,
    sizeBytes: img.size_bytes,
    seed: img.seed,
    url: img.url || null,
    resourceUri: img.resource_uri || null,
    // Thumbnails come in the same order as the images (one per image, unless inline="none").
    thumbnail: parsed.thumbnails.length === parsed.images.length ? parsed.thumbnails[i] : null,
    jobId: parsed.jobId,
    createdAt,
  }));
}

export function formatBytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** "local · landscape · 512×512 · 7.2 KB" */
export function describeItem(item) {
  const parts = [item.provider];
  if (item.style) parts.push(item.style);
  if (item.width && item.height) parts.push(`${item.width}×${item.height}`);
  const size = formatBytes(item.sizeBytes);
  if (size) parts.push(size);
  return parts.filter(Boolean).join(" · ");
}

const ICONS = {
  refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7",
  link: "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1",
  quote: "M7 7h4v4c0 3-1.5 5-4 6M15 7h4v4c0 3-1.5 5-4 6",
  open: "M14 4h6v6M20 4l-9 9M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5",
  edit: "M4 20h4L19 9a2.8 2.8 0 0 0-4-4L4 16v4M13.5 6.5l4 4",
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "g-icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name] || "");
  svg.append(path);
  return svg;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/**
 * Render a gallery into `root` (a <ul> or any element; a <ul class="g-grid"> is created inside).
 *
 * options:
 *   actions: [{id, label, title?, primary?}] or {id, label, menu: [{id, label}]} (a disclosure menu)
 *   onAction(actionId, item, button)
 *   badges(item) -> [string]           labels shown on the image (e.g. "Hero")
 *   onOpen(item)                        clicking the image; default: open item.url in a new tab
 *   loadFallback(item) -> Promise<src>  last resort when neither url nor thumbnail loads
 *   emptyText                           shown when there are no items
 *   label                               accessible name of the list
 */
export function createGallery(root, options = {}) {
  const opts = {
    actions: [],
    onAction: () => {},
    badges: () => [],
    onOpen: null,
    loadFallback: null,
    emptyText: "No images yet.",
    label: "Generated images",
    ...options,
  };
  const list = el("ul", "g-grid");
  list.setAttribute("aria-label", opts.label);
  const empty = el("p", "g-empty", opts.emptyText);
  root.replaceChildren(list, empty);
  const cards = new Map();
  // A click anywhere else closes an open "menu" disclosure.
  document.addEventListener("click", (event) => {
    for (const open of list.querySelectorAll("details.g-menu[open]")) {
      if (!open.contains(event.target)) open.open = false;
    }
  });

  function setSource(img, frame, item) {
    const sources = [item.url, item.thumbnail].filter(Boolean);
    let index = 0;
    const fail = () => {
      frame.classList.remove("g-loading");
      frame.classList.add("g-missing");
      img.removeAttribute("src");
      img.hidden = true;
      frame.querySelector(".g-missing-text").hidden = false;
    };
    const next = () => {
      if (index < sources.length) {
        img.src = sources[index++];
        return;
      }
      if (opts.loadFallback && index === sources.length) {
        index++;
        Promise.resolve(opts.loadFallback(item)).then((src) => (src ? (img.src = src) : fail()), fail);
        return;
      }
      fail();
    };
    img.addEventListener("load", () => {
      frame.classList.remove("g-loading");
      img.hidden = false;
    });
    img.addEventListener("error", next);
    frame.classList.add("g-loading");
    next();
  }

  function button(action, item) {
    const kind = action.secondary ? "g-link" : `g-btn${action.primary ? " g-btn-primary" : ""}`;
    const b = el("button", `${kind}${action.iconOnly ? " g-icon-only" : ""}`);
    b.type = "button";
    b.dataset.action = action.id;
    if (action.icon) b.append(icon(action.icon));
    if (action.iconOnly) b.setAttribute("aria-label", action.label);
    else b.append(document.createTextNode(action.label));
    if (action.title || action.iconOnly) b.title = action.title || action.label;
    b.addEventListener("click", () => opts.onAction(action.id, item, b));
    return b;
  }

  function menu(action, item) {
    const details = el("details", "g-menu");
    const summary = el("summary", "g-btn g-btn-primary", action.label);
    summary.dataset.action = action.id;
    details.append(summary);
    const panel = el("div", "g-menu-panel");
    panel.setAttribute("role", "group");
    panel.setAttribute("aria-label", action.label);
    for (const entry of action.menu) {
      const b = el("button", "g-menu-item", entry.label);
      b.type = "button";
      b.dataset.action = entry.id;
      b.addEventListener("click", () => {
        details.open = false;
        summary.focus();
        opts.onAction(entry.id, item, b);
      });
      panel.append(b);
    }
    details.append(panel);
    details.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && details.open) {
        details.open = false;
        summary.focus();
      }
    });
    return details;
  }

  function build(item) {
    const li = el("li", "g-card");
    li.dataset.id = item.id;
    const figure = el("figure", "g-figure");
    const opener = opts.onOpen ? el("button", "g-frame") : item.url ? el("a", "g-frame") : el("div", "g-frame");
    if (opts.onOpen) {
      opener.type = "button";
      opener.addEventListener("click", () => opts.onOpen(item));
    } else if (item.url) {
      opener.href = item.url;
      opener.target = "_blank";
      opener.rel = "noopener";
    }
    if (opener.tagName !== "DIV") opener.setAttribute("aria-label", `Open full size: ${item.prompt || item.id}`);
    if (item.width && item.height) opener.style.aspectRatio = `${item.width} / ${item.height}`;
    const img = el("img", "g-img");
    img.alt = item.prompt || `Generated image ${item.id}`;
    img.decoding = "async";
    if (item.width) img.width = item.width;
    if (item.height) img.height = item.height;
    const missing = el("span", "g-missing-text", "Image no longer available on the server");
    missing.hidden = true;
    const badges = el("span", "g-badges");
    opener.append(img, missing, badges);
    const caption = el("figcaption", "g-caption");
    const prompt = el("p", "g-prompt", item.prompt || "(no prompt)");
    prompt.title = item.prompt || "";
    caption.append(prompt, el("p", "g-meta", describeItem(item)));
    figure.append(opener, caption);
    const actions = el("div", "g-actions");
    const links = el("div", "g-links");
    for (const action of opts.actions) {
      (action.secondary ? links : actions).append(action.menu ? menu(action, item) : button(action, item));
    }
    const busy = el("span", "g-busy");
    busy.setAttribute("aria-hidden", "true");
    li.append(figure, actions);
    if (links.childElementCount) li.append(links);
    li.append(busy);
    setSource(img, opener, item);
    return li;
  }

  function paintBadges(li, item) {
    const box = li.querySelector(".g-badges");
    box.replaceChildren(...opts.badges(item).map((label) => el("span", "g-badge", label)));
  }

  return {
    /** Show exactly `items`, newest first as given; existing cards are kept (no image reload). */
    render(items) {
      const seen = new Set();
      let previous = null;
      for (const item of items) {
        seen.add(item.id);
        let li = cards.get(item.id);
        if (!li) {
          li = build(item);
          cards.set(item.id, li);
        }
        paintBadges(li, item);
        const want = previous ? previous.nextSibling : list.firstChild;
        if (want !== li) list.insertBefore(li, want);
        previous = li;
      }
      for (const [id, li] of cards) {
        if (!seen.has(id)) {
          li.remove();
          cards.delete(id);
        }
      }
      empty.hidden = items.length > 0;
    },
    setBusy(id, flag) {
      const li = cards.get(id);
      if (!li) return;
      li.classList.toggle("g-is-busy", flag);
      li.setAttribute("aria-busy", String(flag));
      for (const b of li.querySelectorAll("button[data-action]")) {
        if (b.dataset.action === "regenerate") b.disabled = flag;
      }
    },
    card(id) {
      return cards.get(id) || null;
    },
  };
}

/** Copy text; falls back to a hidden textarea where the async clipboard API is missing or blocked. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the legacy path (sandboxed frames, insecure origins)
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "g-offscreen";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
