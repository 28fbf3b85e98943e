// The edit panel's parts: which providers can edit, the aspect-ratio choices, reading an uploaded
// file, and the before/after comparison. app.js wires them to the page and runs edit_image
// through the same path as generate_image (one client, one progress view, one error box).

import { formatBytes } from "./gallery.js";

/** The provider-neutral ratios both tools take (the server maps each to a size per provider). */
export const ASPECT_RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"];

/** The largest file the page uploads. It travels as base64 (4/3 of its size) inside a JSON body,
 * and a server's default request limit (MCP_MAX_BODY_BYTES) is 4 MiB: this leaves room for the rest. */
export const MAX_UPLOAD_BYTES = 3 * 1024 * 1024 - 32 * 1024;

/** list_providers entries that are configured and whose catalog has an `edit` block. */
export function editorsFrom(listed) {
  const providers = Array.isArray(listed?.providers) ? listed.providers : [];
  return providers.filter((p) => p && p.configured && p.edit && p.edit.max_images > 0);
}

/** Fill a <select> with "first" (value "") and the ratios, labelled with `provider`'s size for each. */
export function fillAspectOptions(select, provider, first) {
  const keep = select.value;
  const sizes = (provider && provider.aspect_ratios) || {};
  select.replaceChildren(new Option(first, ""));
  for (const ratio of ASPECT_RATIOS) {
    const size = typeof sizes[ratio] === "string" ? sizes[ratio].replace(/x/i, "×") : "";
    select.append(new Option(size ? `${ratio} · ${size}` : ratio, ratio));
  }
  select.value = ASPECT_RATIOS.includes(keep) ? keep : "";
}

/** A data: URI the server will sniff: an image type is kept, anything else is dropped so the
 * server looks at the bytes and says what is wrong with them (invalid_image), not with the URI. */
export function asImageDataUri(dataUri) {
  const comma = dataUri.indexOf(",");
  const head = dataUri.slice(0, comma);
  const type = /^data:(image\/[a-z0-9.+-]+)/i.exec(head);
  return `data:${type ? type[1].toLowerCase() : ""};base64,${dataUri.slice(comma + 1)}`;
}

/** Check a picked file's size, then read it as a data: URI: {dataUri, name, size} or {error}. */
export async function readUpload(file, maxBytes = MAX_UPLOAD_BYTES) {
  if (!file) return { error: "Pick a file to upload." };
  if (file.size === 0) return { error: `${file.name} is empty. Pick a PNG, JPEG or WebP image.` };
  if (file.size > maxBytes) {
    return {
      error: `${file.name} is too large to upload: ${formatBytes(file.size)}, over this page's ${formatBytes(maxBytes)} ` +
        "limit (sent as base64, an image must fit the server's request limit, 4 MB by default). " +
        "Pick a smaller image, or save it as JPEG or WebP first.",
    };
  }
  try {
    const dataUri = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    return { dataUri: asImageDataUri(dataUri), name: file.name, size: file.size };
  } catch (err) {
    return { error: `Couldn't read ${file.name}: ${err?.message || err}.` };
  }
}

/**
 * The before/after pair. Each side shows an image (the first of its sources that loads) or a
 * placeholder sentence; a side with a URL opens it full size.
 */
export class CompareView {
  constructor({ before, after, info }) {
    this.sides = { before, after };
    this.info = info;
  }

  /** Show `image` ({sources, alt, href, width, height}) on `side`, or `placeholder` when there is none.
   * Resolves to the natural size shown, or null when nothing loaded. */
  show(side, image, placeholder) {
    const { img, frame, empty } = this.sides[side];
    const token = {};
    this.sides[side].token = token;
    img.onload = null;
    img.onerror = null;
    img.hidden = true;
    img.removeAttribute("src");
    frame.removeAttribute("href");
    frame.removeAttribute("target");
    frame.removeAttribute("aria-label");
    frame.style.aspectRatio = image?.width && image?.height ? `${image.width} / ${image.height}` : "";
    const sources = (image?.sources || []).filter(Boolean);
    if (!sources.length) {
      empty.textContent = placeholder;
      empty.hidden = false;
      return Promise.resolve(null);
    }
    empty.textContent = "Loading…";
    empty.hidden = false;
    img.alt = image.alt;
    if (image.href) {
      frame.href = image.href;
      frame.target = "_blank";
      frame.rel = "noopener";
      frame.setAttribute("aria-label", `Open full size: ${image.alt}`);
    }
    return new Promise((resolve) => {
      let index = 0;
      img.onload = () => {
        if (this.sides[side].token !== token) return;
        img.hidden = false;
        empty.hidden = true;
        if (!frame.style.aspectRatio) frame.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
        resolve({ width: img.naturalWidth, height: img.naturalHeight });
      };
      img.onerror = () => {
        if (this.sides[side].token !== token) return;
        if (index < sources.length) {
          img.src = sources[index++];
          return;
        }
        img.hidden = true;
        img.removeAttribute("src");
        empty.textContent = image.missing || "This image can't be shown.";
        resolve(null);
      };
      img.src = sources[index++];
    });
  }

  note(text) {
    this.info.textContent = text;
  }
}

/** "1280×720 · 12 KB", from whatever is known. */
export function describeSize({ width, height, size } = {}) {
  return [width && height ? `${width}×${height}` : "", formatBytes(size)].filter(Boolean).join(" · ");
}
