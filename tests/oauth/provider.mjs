// A real OpenID provider for the OAuth tests: panva's oidc-provider (pinned in package-lock.json) on 127.0.0.1.
//
// tests/oauth/oidc.py spawns it; it prints one line `READY <port>` on stdout once it listens and logs
// to stderr. Environment:
//   OIDC_PORT        port to bind on 127.0.0.1 (0 or unset: a free one); the issuer is http://127.0.0.1:<port>
//   OIDC_KEYS_FILE   JSON {"keys": [private JWKs]}; the first key signs, all are published at the JWKS endpoint
//   OIDC_TOKEN_TTL   access token lifetime in seconds (default 300)
//   OIDC_ACCOUNT     the account the automated login signs in as (default alice)
//
// What it offers:
//   * static confidential clients (client_secret_basic or client_secret_post, grant client_credentials):
//     svc-user / svc-user-secret (scope images), svc-admin / svc-admin-secret (images images:admin),
//     svc-none / svc-none-secret (other). Asking for a scope the client is not allowed is invalid_scope.
//   * resource indicators (RFC 8707): any http://127.0.0.1:* or http://localhost:* resource; its access
//     tokens are RS256 JWTs (the alg of the signing key) with aud = the resource and scope = the requested
//     scopes that are among "images images:admin other". A client_credentials token's sub is its client_id.
//   * open dynamic client registration (RFC 7591), so public clients (PKCE, loopback http redirect URIs),
//     like the MCP TypeScript SDK's, can register themselves.
//   * an automated interaction: GET /interaction/<uid> logs in as OIDC_ACCOUNT and grants what the
//     authorization request asked for (scopes and resource), then redirects back; no form, no consent screen.
//   * POST /__rotate: re-reads OIDC_KEYS_FILE; from then on tokens are signed with its first key and the
//     JWKS endpoint publishes its keys (204). oidc-provider fixes its keys at construction, so this builds a
//     new Provider and swaps the request handler; all of them share one in-memory store, so registered
//     clients, grants, sessions and tokens survive a rotation (not a restart).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const PORT = Number(process.env.OIDC_PORT ?? 0);
const KEYS_FILE = process.env.OIDC_KEYS_FILE;
const TTL = Number(process.env.OIDC_TOKEN_TTL ?? 300);
const ACCOUNT = process.env.OIDC_ACCOUNT || 'alice';
const RESOURCE_SCOPES = 'images images:admin other';
const COOKIE_KEYS = ['mcp-image-server-oauth-tests-cookie-key']; // the same for every Provider built here
// One in-memory store for every Provider built here. (Passing oidc-provider's MemoryAdapter class itself
// would give each Provider a store of its own, and a rotation would forget every client and token.)
const ADAPTER = createMemoryAdapter();

const log = (...parts) => console.error(new Date().toISOString(), ...parts);

if (!KEYS_FILE) {
    log('OIDC_KEYS_FILE is required');
    process.exit(2);
}

const CLIENTS = [
    ['svc-user', 'images'],
    ['svc-admin', 'images images:admin'],
    ['svc-none', 'other'],
].map(([id, scope]) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
}));

function readKeys() {
    const { keys } = JSON.parse(readFileSync(KEYS_FILE, 'utf8'));
    if (!Array.isArray(keys) || keys.length === 0) throw new Error(`${KEYS_FILE} has no keys`);
    return keys;
}

function loopbackResource(indicator) {
    const url = URL.parse(indicator);
    return url !== null && url.protocol === 'http:' && ['127.0.0.1', 'localhost'].includes(url.hostname);
}

function build(issuer, keys) {
    const signer = keys[0];
    const alg = signer.alg ?? 'RS256';
    const provider = new Provider(issuer, {
        adapter: ADAPTER,
        jwks: { keys },
        clients: CLIENTS,
        scopes: ['openid', 'offline_access', ...RESOURCE_SCOPES.split(' ')],
        responseTypes: ['code', 'none'], // OAuth 2.1: no implicit or hybrid flows
        claims: { openid: ['sub'] },
        clientDefaults: { id_token_signed_response_alg: alg },
        cookies: { keys: COOKIE_KEYS },
        findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
        interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
        pkce: { required: () => true }, // OAuth 2.1: every authorization code flow uses PKCE (S256)
        ttl: {
            AccessToken: TTL,
            ClientCredentials: TTL,
            AuthorizationCode: 60,
            IdToken: TTL,
            RefreshToken: 24 * 3600,
            Interaction: 600,
            Session: 3600,
            Grant: 3600,
        },
        features: {
            devInteractions: { enabled: false },
            clientCredentials: { enabled: true },
            introspection: { enabled: true },
            revocation: { enabled: true },
            registration: { enabled: true, initialAccessToken: false },
            resourceIndicators: {
                enabled: true,
                defaultResource: async (ctx, client, oneOf) => oneOf,
                useGrantedResource: async () => true,
                getResourceServerInfo: async (ctx, indicator) => {
                    if (!loopbackResource(indicator)) {
                        throw new errors.InvalidTarget('only http://127.0.0.1:* and http://localhost:* resources are served');
                    }
                    return {
                        scope: RESOURCE_SCOPES,
                        audience: indicator,
                        accessTokenTTL: TTL,
                        accessTokenFormat: 'jwt',
                        jwt: { sign: { alg, kid: signer.kid } },
                    };
                },
            },
        },
    });
    for (const event of ['server_error', 'grant.error', 'authorization.error', 'registration_create.error',
        'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error']) {
        provider.on(event, (ctx, error) => log(event, error?.name ?? '', error?.message ?? error, error?.error_description ?? ''));
    }
    provider.on('registration_create.success', (ctx, client) => log('registered client', client.clientId, JSON.stringify(client.redirectUris)));
    provider.on('grant.success', ctx => log('token issued to', ctx.oidc.client?.clientId, ctx.oidc.params?.grant_type));
    return provider;
}

// The automated login and consent: whatever the authorization request asked for is granted.
async function interaction(provider, req, res) {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session, grantId } = details;
    let result;
    if (prompt.name === 'login') {
        result = { login: { accountId: ACCOUNT } };
    } else if (prompt.name === 'consent') {
        const grant = grantId
            ? await provider.Grant.find(grantId)
            : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        const missing = prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
            grant.addResourceScope(indicator, scopes.join(' '));
        }
        result = { consent: { grantId: await grant.save() } };
    } else {
        result = { error: 'access_denied', error_description: `unexpected prompt ${prompt.name}` };
    }
    log('interaction', details.uid, prompt.name, 'client', params.client_id, 'scope', params.scope ?? '', 'resource', params.resource ?? '');
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

let provider = null;
let handler = null;

function plain(res, status, text) {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(text);
}

const server = createServer(async (req, res) => {
    const started = Date.now();
    res.on('finish', () => log(req.method, req.url, res.statusCode, `${Date.now() - started}ms`));
    if (handler === null) return plain(res, 503, 'starting');
    const path = new URL(req.url, 'http://x').pathname;
    try {
        if (path === '/__rotate' && req.method === 'POST') {
            const keys = readKeys();
            const next = build(provider.issuer, keys);
            provider = next;
            handler = next.callback();
            log('rotated: signing with', keys[0].kid, 'publishing', keys.map(k => k.kid).join(' '));
            res.writeHead(204);
            return res.end();
        }
        if (path.startsWith('/interaction/') && req.method === 'GET') {
            return await interaction(provider, req, res);
        }
    } catch (error) {
        log('error on', req.method, req.url, error?.stack ?? error);
        if (!res.headersSent) return plain(res, 500, String(error?.message ?? error));
        return res.end();
    }
    return handler(req, res);
});

server.listen(PORT, '127.0.0.1', () => {
    const { port } = server.address();
    try {
        provider = build(`http://127.0.0.1:${port}`, readKeys());
    } catch (error) {
        log('could not start:', error?.stack ?? error);
        process.exit(1);
    }
    handler = provider.callback();
    log('oidc-provider listening, issuer', provider.issuer);
    console.log(`READY ${port}`);
});
server.on('error', error => {
    log('listen failed:', error?.message ?? error);
    process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
        server.close();
        server.closeAllConnections();
        process.exit(0);
    });
}
