// A small MCP client for the browser: Streamable HTTP, handshake era (protocol 2025-11-25).
//
// Why the handshake era: it is the era every MCP client and server speaks today (the
// official TypeScript SDK, the Inspector, mcp-remote), our server serves it on the same
// /mcp endpoint, and its explicit session gives this page a clean life cycle: initialize
// once, send Mcp-Session-Id + MCP-Protocol-Version on every request, DELETE on disconnect.
// Robustness rules implemented here:
//   * Accept both application/json and text/event-stream and handle either answer; SSE
//     answers are parsed incrementally so progress notifications arrive live.
//   * 404 on a request that carried a session id = the session is gone (idle expiry,
//     server restart): open a new session and send the request once more.
//   * Server-to-client requests on a call's stream (ping) are answered.
//   * Cancelling sends notifications/cancelled (in this era a closed stream is not a
//     cancellation) and then aborts the fetch.
//   * Every failure becomes an McpError with a `kind` the UI turns into plain words.

export const PROTOCOL_VERSION = "2025-11-25";
const CLIENT_INFO = { name: "mcp-image-server-web-design-demo", version: "1.0.0" };
const CONNECT_TIMEOUT_MS = 15000;
const REQUEST_TIMEOUT_MS = 60000;

/** A failure with a machine-readable kind: auth, origin, host, network, endpoint, busy,
 * too-large, http, rpc, protocol, timeout, cancelled. */
export class McpError extends Error {
  constructor(kind, message, { status = null, code = null, data = null, url = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = "McpError";
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.data = data;
    this.url = url;
  }
}

/** Incremental text/event-stream parser (WHATWG rules: CR, LF or CRLF line ends; data lines joined by LF). */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.sawCR = false;
  }

  push(text) {
    // A CR at the end of one chunk may be followed by the LF of a CRLF in the next.
    if (this.sawCR && text.startsWith("\n")) text = text.slice(1);
    this.sawCR = text.endsWith("\r");
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  end() {
    if (this.buffer) this.line(this.buffer);
    this.buffer = "";
    this.line("");
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}

function errorForStatus(status, bodyText, url, hadSession) {
  let body = null;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = null;
  }
  const serverMessage = body?.error?.message || body?.error_description || (typeof body?.error === "string" ? body.error : "");
  const opts = { status, url, data: body };
  if (status === 401) return new McpError("auth", "The server rejected the token.", opts);
  if (status === 403) return new McpError("origin", serverMessage || "Forbidden", opts);
  if (status === 421) return new McpError("host", serverMessage || "Invalid Host header", opts);
  if (status === 404 && hadSession) return new McpError("session", "Session not found", opts);
  if (status === 404 || status === 405) return new McpError("endpoint", serverMessage || `HTTP ${status}`, opts);
  if (status === 413) return new McpError("too-large", serverMessage || "Request body too large", opts);
  if (status === 503 || status === 429) return new McpError("busy", serverMessage || `HTTP ${status}`, opts);
  if (body?.error?.code !== undefined && body?.jsonrpc) {
    return new McpError("rpc", serverMessage, { ...opts, code: body.error.code, data: body.error.data });
  }
  return new McpError("http", serverMessage || `HTTP ${status}`, opts);
}

/**
 * One connection to an MCP server over Streamable HTTP.
 *
 *   const client = new McpHttpClient({ url, token });
 *   await client.connect();
 *   const result = await client.callTool("generate_image", { prompt }, { onProgress });
 *   await client.close();
 */
export class McpHttpClient {
  constructor({ url, token = "", fetchImpl = globalThis.fetch.bind(globalThis), clientInfo = CLIENT_INFO } = {}) {
    this.url = url;
    this.token = token;
    this.fetch = fetchImpl;
    this.clientInfo = clientInfo;
    this.sessionId = null;
    this.protocolVersion = null;
    this.serverInfo = null;
    this.instructions = null;
    this.nextId = 1;
    this.connected = false;
  }

  headers(extra = {}) {
    const headers = {
      Accept: "application/json, text/event-stream",
      "Content-Type": "application/json",
      ...extra,
    };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.sessionId) headers["Mcp-Session-Id"] = this.sessionId;
    if (this.protocolVersion) headers["MCP-Protocol-Version"] = this.protocolVersion;
    return headers;
  }

  /** initialize -> remember Mcp-Session-Id and the negotiated version -> notifications/initialized. */
  async connect() {
    this.sessionId = null;
    this.protocolVersion = null;
    const result = await this.rawRequest(
      "initialize",
      { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: this.clientInfo },
      { timeoutMs: CONNECT_TIMEOUT_MS, isInitialize: true },
    );
    if (!result || typeof result.protocolVersion !== "string") {
      throw new McpError("protocol", "The server's initialize answer has no protocolVersion.", { url: this.url });
    }
    this.protocolVersion = result.protocolVersion;
    this.serverInfo = result.serverInfo || null;
    this.instructions = result.instructions || null;
    await this.notify("notifications/initialized");
    this.connected = true;
    return result;
  }

  /** A request; a lost session is re-opened once, transparently. */
  async request(method, params = {}, options = {}) {
    if (!this.connected) throw new McpError("protocol", "Not connected.", { url: this.url });
    try {
      return await this.rawRequest(method, params, options);
    } catch (err) {
      if (!(err instanceof McpError) || err.kind !== "session") throw err;
      await this.connect();
      return this.rawRequest(method, params, options);
    }
  }

  async notify(method, params) {
    const body = { jsonrpc: "2.0", method };
    if (params !== undefined) body.params = params;
    await this.post(body, { timeoutMs: CONNECT_TIMEOUT_MS });
  }

  async callTool(name, args, options = {}) {
    return this.request("tools/call", { name, arguments: args }, options);
  }

  async readResource(uri, options = {}) {
    return this.request("resources/read", { uri }, options);
  }

  /** resources/read of a JSON text resource, parsed. */
  async readJson(uri) {
    const result = await this.readResource(uri);
    const text = result?.contents?.[0]?.text;
    if (typeof text !== "string") throw new McpError("protocol", `${uri} has no text content.`, { url: this.url });
    return JSON.parse(text);
  }

  /** DELETE the session (the server frees it now instead of at idle expiry). */
  async close({ keepalive = false } = {}) {
    const sessionId = this.sessionId;
    this.connected = false;
    if (!sessionId) return;
    this.sessionId = null;
    try {
      const headers = { "Mcp-Session-Id": sessionId, "MCP-Protocol-Version": this.protocolVersion || PROTOCOL_VERSION };
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      await this.fetch(this.url, { method: "DELETE", headers, keepalive });
    } catch {
      // Best effort: an unreachable server forgets idle sessions by itself.
    }
  }

  async post(body, { signal, timeoutMs } = {}) {
    const hadSession = Boolean(this.sessionId);
    const controller = new AbortController();
    const timer = timeoutMs ? setTimeout(() => controller.abort(new McpError("timeout", "timeout")), timeoutMs) : null;
    const onAbort = () => controller.abort(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let response;
    try {
      response = await this.fetch(this.url, {
        method: "POST",
        headers: this.headers(),
        body: JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (cause) {
      if (signal?.aborted) throw new McpError("cancelled", "Cancelled.", { url: this.url, cause });
      if (controller.signal.aborted) throw new McpError("timeout", "The server did not answer in time.", { url: this.url, cause });
      throw new McpError("network", String(cause?.message || cause), { url: this.url, cause });
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw errorForStatus(response.status, text, this.url, hadSession);
    }
    return response;
  }

  /** Send one request and wait for its response, feeding progress to `onProgress`. */
  async rawRequest(method, params, { onProgress, signal, timeoutMs = REQUEST_TIMEOUT_MS, isInitialize = false } = {}) {
    const id = this.nextId++;
    const body = { jsonrpc: "2.0", id, method, params: { ...params } };
    const progressToken = onProgress ? `p-${id}-${Math.random().toString(36).slice(2, 10)}` : null;
    if (progressToken) body.params._meta = { ...(params._meta || {}), progressToken };
    if (signal?.aborted) throw new McpError("cancelled", "Cancelled.", { url: this.url });

    // Cancelling: tell the server first (a dropped connection is not a cancellation in this era).
    const cancelController = new AbortController();
    const onAbort = () => {
      if (!isInitialize && this.sessionId) {
        this.notify("notifications/cancelled", { requestId: id, reason: "Cancelled by the user" }).catch(() => {});
      }
      cancelController.abort(signal.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      // While streaming, a silent server is fine (it sends keep-alives); only the wait for
      // the response headers is bounded.
      const response = await this.post(body, { signal: cancelController.signal, timeoutMs });
      if (isInitialize) {
        this.sessionId = response.headers.get("Mcp-Session-Id");
      }
      const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
      let message;
      if (type === "text/event-stream") {
        message = await this.readStream(response, id, progressToken, onProgress, cancelController.signal);
      } else if (type === "application/json") {
        message = await response.json();
      } else {
        throw new McpError("endpoint", `unexpected content type ${type || "(none)"}`, { url: this.url, status: response.status });
      }
      if (message.error) {
        throw new McpError("rpc", message.error.message || "error", {
          code: message.error.code,
          data: message.error.data,
          url: this.url,
        });
      }
      return message.result;
    } catch (err) {
      if (signal?.aborted) throw new McpError("cancelled", "Cancelled.", { url: this.url, cause: err });
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async readStream(response, id, progressToken, onProgress, signal) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let answer = null;
    const pendingReplies = [];
    const parser = new SseParser(({ data }) => {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return; // a priming event or a non-JSON payload
      }
      if (msg.id === id && ("result" in msg || "error" in msg)) {
        answer = msg;
      } else if (msg.method === "notifications/progress" && msg.params?.progressToken === progressToken) {
        onProgress?.(msg.params);
      } else if (msg.method && msg.id !== undefined) {
        // A server-to-client request on this stream; we declare no capabilities, so only ping is expected.
        const reply = msg.method === "ping"
          ? { jsonrpc: "2.0", id: msg.id, result: {} }
          : { jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: `Method not found: ${msg.method}` } };
        pendingReplies.push(this.post(reply).catch(() => {}));
      }
    });
    const onAbort = () => reader.cancel().catch(() => {});
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      while (answer === null) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (cause) {
          if (signal?.aborted) throw new McpError("cancelled", "Cancelled.", { url: this.url, cause });
          throw new McpError("network", "The connection dropped before the server answered.", { url: this.url, cause });
        }
        if (chunk.done) {
          parser.end();
          break;
        }
        parser.push(decoder.decode(chunk.value, { stream: true }));
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (answer !== null) reader.cancel().catch(() => {});
    }
    await Promise.all(pendingReplies);
    if (signal?.aborted) throw new McpError("cancelled", "Cancelled.", { url: this.url });
    if (answer === null) {
      throw new McpError("network", "The server closed the stream before answering.", { url: this.url });
    }
    return answer;
  }
}

/** A sentence for a person, from any error this client throws (or a plain Error). */
export function describeError(err, { url } = {}) {
  const where = err?.url || url || "the server";
  if (!(err instanceof McpError)) return `Something went wrong: ${err?.message || err}`;
  switch (err.kind) {
    case "auth":
      return "The server rejected the token. Check the token field: it must match the server's MCP_AUTH_TOKEN.";
    case "origin":
      return `The server refused requests from this page's address (${globalThis.location?.origin || "this origin"}). ` +
        "Add it to MCP_ALLOWED_ORIGINS on the server, or open the demo from the server itself.";
    case "host":
      return "The server does not accept this host name (DNS-rebinding guard). Use 127.0.0.1 or localhost in the address.";
    case "network":
      return err.message.startsWith("The ")
        ? `${err.message} Is ${where} still running?`
        : `Can't reach ${where}. Is the server running, and is the address right?`;
    case "timeout":
      return `${where} did not answer in time. Is it overloaded, or is the address pointing at something else?`;
    case "endpoint":
      return `There is no MCP endpoint at ${where} (${err.status ? `HTTP ${err.status}` : err.message}). ` +
        "Check the server URL; it usually ends in /mcp.";
    case "session":
      return "The server forgot this session. Connect again.";
    case "busy":
      return `The server is busy right now (${err.message}). Try again in a moment.`;
    case "too-large":
      return "That request is too large for the server.";
    case "cancelled":
      return "Cancelled.";
    case "rpc":
      return capitalise(err.message || `The server answered with error ${err.code}.`);
    case "http":
      return err.status >= 500
        ? `The server had an internal error (HTTP ${err.status}). Its log says more.`
        : `The server refused the request (HTTP ${err.status}: ${err.message}).`;
    default:
      return capitalise(err.message);
  }
}

export function capitalise(text) {
  const s = String(text || "").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}
