// The official TypeScript SDK client through the whole MCP authorization flow against mcp-image-server.
//
//   node ts_oauth_client.mjs <server /mcp URL> [scope]
//
// connect -> 401 with WWW-Authenticate -> protected resource metadata (RFC 9728) -> authorization server
// metadata -> dynamic client registration -> authorization code with PKCE and a `resource` parameter
// (the login and consent are automatic at tests/oauth/provider.mjs: redirectToAuthorization below
// follows the redirects itself, with a cookie jar, until one points at our redirect URI, and keeps its
// `code`) -> transport.finishAuth(code) -> reconnect -> tools/call generate_image on the local provider.
//
// Prints one JSON line on stdout: {"ok", "result": {isError, contentTypes, structuredKeys, images},
// "urls": [every URL the SDK fetched, in order], "authorizationUrl", "tokenClaims", "clientId"};
// on failure {"ok": false, "error", "urls"} and exit status 1. Logs to stderr.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [serverUrl, scope = 'images'] = process.argv.slice(2);
if (!serverUrl) {
    console.error('usage: node ts_oauth_client.mjs <server /mcp URL> [scope]');
    process.exit(2);
}
// Never listened on: the automated login stops at the redirect that points here.
const REDIRECT_URI = 'http://127.0.0.1:8976/oauth/callback';
const urls = [];
const log = (...parts) => console.error('[ts-oauth-client]', ...parts);

setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: 'timeout', urls }));
    process.exit(3);
}, 60_000).unref();

// Every request the SDK makes (MCP, discovery, registration, token) goes through here.
async function recordingFetch(input, init) {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const response = await fetch(input, init);
    urls.push({ method: init?.method ?? 'GET', url, status: response.status });
    log(init?.method ?? 'GET', url, response.status);
    return response;
}

// A cookie jar just good enough for oidc-provider's interaction cookies (name, path, expiry).
class CookieJar {
    #cookies = new Map(); // `${path}\n${name}` -> {name, value, path}

    store(requestUrl, response) {
        for (const header of response.headers.getSetCookie()) {
            const [pair, ...attributes] = header.split(';').map(part => part.trim());
            const eq = pair.indexOf('=');
            const name = pair.slice(0, eq);
            const value = pair.slice(eq + 1);
            let path = '/';
            let expired = value === '';
            for (const attribute of attributes) {
                const [key, val = ''] = attribute.split('=');
                const k = key.toLowerCase();
                if (k === 'path') path = val || '/';
                if (k === 'max-age' && Number(val) <= 0) expired = true;
                if (k === 'expires' && Date.parse(val) <= Date.now()) expired = true;
            }
            const key = `${path}\n${name}`;
            if (expired) this.#cookies.delete(key);
            else this.#cookies.set(key, { name, value, path });
        }
    }

    header(url) {
        const { pathname } = new URL(url);
        return [...this.#cookies.values()]
            .filter(({ path }) => pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`))
            .map(({ name, value }) => `${name}=${value}`)
            .join('; ');
    }
}

class InMemoryOAuthProvider {
    clientInfo = undefined;
    savedTokens = undefined;
    verifier = undefined;
    code = undefined;
    authorizationUrl = undefined;

    get redirectUrl() {
        return REDIRECT_URI;
    }

    get clientMetadata() {
        return {
            client_name: 'mcp-image-server OAuth test (TypeScript SDK)',
            redirect_uris: [REDIRECT_URI],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
            scope,
        };
    }

    clientInformation() {
        return this.clientInfo;
    }

    saveClientInformation(info) {
        log('registered as', info.client_id);
        this.clientInfo = info;
    }

    tokens() {
        return this.savedTokens;
    }

    saveTokens(tokens) {
        log('got tokens: scope', tokens.scope, 'expires_in', tokens.expires_in);
        this.savedTokens = tokens;
    }

    saveCodeVerifier(verifier) {
        this.verifier = verifier;
    }

    codeVerifier() {
        if (!this.verifier) throw new Error('no code verifier saved');
        return this.verifier;
    }

    // The "browser": follow the provider's redirects (its login and consent are automatic) to our redirect URI.
    async redirectToAuthorization(authorizationUrl) {
        this.authorizationUrl = authorizationUrl.href;
        log('authorizing at', authorizationUrl.href);
        const jar = new CookieJar();
        let url = authorizationUrl.href;
        for (let hop = 0; hop < 20; hop++) {
            const cookie = jar.header(url);
            const response = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
            urls.push({ method: 'GET', url, status: response.status, browser: true });
            jar.store(url, response);
            const location = response.headers.get('location');
            if (response.status < 300 || response.status >= 400 || !location) {
                throw new Error(`authorization stopped at ${url}: ${response.status} ${(await response.text()).slice(0, 500)}`);
            }
            await response.arrayBuffer();
            url = new URL(location, url).href;
            if (url.startsWith(REDIRECT_URI)) {
                const params = new URL(url).searchParams;
                if (params.get('error')) {
                    throw new Error(`authorization failed: ${params.get('error')} ${params.get('error_description') ?? ''}`);
                }
                this.code = params.get('code');
                log('authorization code received');
                return;
            }
        }
        throw new Error('too many redirects during authorization');
    }
}

const summary = result => {
    const sc = result.structuredContent ?? {};
    return {
        isError: result.isError ?? false,
        status: sc.status ?? null,
        images: (sc.images ?? []).length,
        structuredKeys: Object.keys(sc).sort(),
        contentTypes: (result.content ?? []).map(block => block.type),
        text: (result.content ?? []).filter(block => block.type === 'text').map(block => block.text).join('\n').slice(0, 2000),
    };
};

const claimsOf = token => {
    try {
        return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    } catch {
        return null;
    }
};

const authProvider = new InMemoryOAuthProvider();
const newTransport = () => new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider, fetch: recordingFetch });
const newClient = () => new Client({ name: 'mcp-image-server-oauth-probe', version: '1.0.0' }, { capabilities: {} });

try {
    let transport = newTransport();
    let client = newClient();
    let firstConnect = 'connected';
    try {
        await client.connect(transport);
    } catch (error) {
        if (!(error instanceof UnauthorizedError)) throw error;
        firstConnect = 'unauthorized';
        if (!authProvider.code) throw new Error(`unauthorized, but no authorization code: ${error.message}`);
        await transport.finishAuth(authProvider.code);
        await client.close().catch(() => {});
        transport = newTransport();
        client = newClient();
        await client.connect(transport);
    }
    const result = await client.callTool(
        { name: 'generate_image', arguments: { prompt: 'a lighthouse', provider: 'local' } },
        undefined,
        { timeout: 60_000 },
    );
    await client.close();
    console.log(JSON.stringify({
        ok: true,
        firstConnect,
        result: summary(result),
        urls,
        authorizationUrl: authProvider.authorizationUrl ?? null,
        clientId: authProvider.clientInfo?.client_id ?? null,
        tokenScope: authProvider.savedTokens?.scope ?? null,
        tokenClaims: authProvider.savedTokens ? claimsOf(authProvider.savedTokens.access_token) : null,
    }));
    process.exit(0);
} catch (error) {
    log('failed:', error?.stack ?? error);
    console.log(JSON.stringify({ ok: false, error: String(error?.message ?? error), urls }));
    process.exit(1);
}
